//! Florence-2's tokenizer, processor and hub resolution against transformers 5.24
//! (fixtures made by scripts/generate_florence2_text_fixtures.py; see the README beside them).

mod common;
use common::offline_hub;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use fedvlm::models::florence2::hub::{
    Florence2Files, HubError, HubOptions, ModelSource, WeightsFormat,
};
use fedvlm::models::florence2::processor::{
    BANNED_GROUNDING_TOKENS, Florence2Answer, Florence2Processor, ImageConfig, ProcessorError,
    construct_prompt, load_image, preprocess_images,
};
use fedvlm::models::florence2::tokenizer::{
    BatchOptions, Florence2Tokenizer, Padding, TokenizerError, florence2_added_tokens,
};
use serde_json::Value;

/// Max |Rust - transformers (PIL backend)| allowed on `pixel_values`, in normalised units.
/// Measured: 0 on every case. The resize reproduces Pillow's fixed-point arithmetic byte for
/// byte and the rescale/normalise repeats transformers' float64-then-float32 steps, which are
/// correctly rounded IEEE operations, so the test asks for bit equality. (One level of an 8-bit
/// channel is 1/255/0.225 = 0.0174 in these units.)
const PIL_TOLERANCE: f32 = 0.0;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/florence2_text")
        .join(name)
}

fn cases() -> Value {
    let text = std::fs::read_to_string(fixture("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn rows(v: &Value) -> Vec<Vec<u32>> {
    v.as_array().expect("rows").iter().map(ids).collect()
}

fn tokenizer() -> Florence2Tokenizer {
    Florence2Tokenizer::from_file(fixture("tokenizer.json")).expect("tokenizer loads")
}

#[test]
fn florence_tokens_have_transformers_ids() {
    let c = cases();
    let tok = tokenizer();
    let base = c["base_vocab_size"].as_u64().unwrap() as u32;
    let added = florence2_added_tokens();
    assert_eq!(added.len(), 1024);
    assert_eq!(
        (added[0].as_str(), added[4].as_str(), added[1023].as_str()),
        ("<od>", "<loc_0>", "<and>")
    );
    for (offset, token) in added.iter().enumerate() {
        assert_eq!(
            tok.token_to_id(token),
            Some(base + offset as u32),
            "{token}"
        );
    }
    for (token, id) in c["florence_tokens"].as_object().unwrap() {
        assert_eq!(
            tok.token_to_id(token),
            Some(id.as_u64().unwrap() as u32),
            "{token}"
        );
    }
    assert_eq!(tok.loc_token_id(0), Some(base + 4));
    assert_eq!(tok.loc_token_id(999), Some(base + 1003));
    assert_eq!(tok.loc_token_id(1000), None);
    assert_eq!((tok.bos_id(), tok.pad_id(), tok.eos_id()), (0, 1, 2));
    // transformers' tokenizer also has `<image>`, which Microsoft's processor does not add.
    assert_eq!(
        tok.vocab_size() + 1,
        c["len_tokenizer"].as_u64().unwrap() as usize
    );
    assert_eq!(tok.token_to_id("<image>"), None);
}

fn check_encode(tok: &Florence2Tokenizer, c: &Value) {
    let cases = c["encode"].as_array().unwrap();
    assert!(cases.len() > 30);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
        assert_eq!(
            tok.encode_text(text).unwrap(),
            ids(&case["ids_no_special"]),
            "{text:?} without special tokens"
        );
    }
}

#[test]
fn encode_matches_transformers() {
    check_encode(&tokenizer(), &cases());
}

#[test]
fn converted_tokenizer_file_gives_the_same_ids() {
    // transformers' converted checkpoints ship the 1024 tokens (and `<image>`) in the file.
    let c = cases();
    let tok = Florence2Tokenizer::from_file(fixture("tokenizer_converted.json")).unwrap();
    check_encode(&tok, &c);
    let image = c["image_token_id"].as_u64().unwrap() as u32;
    assert_eq!(tok.token_to_id("<image>"), Some(image));
    assert_eq!(
        tok.vocab_size(),
        c["len_tokenizer"].as_u64().unwrap() as usize
    );
}

#[test]
fn batch_padding_and_truncation_match_transformers() {
    let tok = tokenizer();
    for case in cases()["batches"].as_array().unwrap() {
        let texts: Vec<&str> = case["texts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let max_length = case["max_length"].as_u64().map(|m| m as usize);
        let padding = match case["padding"].as_str().unwrap() {
            "longest" => Padding::Longest,
            _ => Padding::Fixed(max_length.unwrap()),
        };
        let out = tok
            .encode_batch(
                &texts,
                &BatchOptions {
                    padding,
                    max_length,
                },
            )
            .unwrap();
        assert_eq!(out.input_ids, rows(&case["input_ids"]), "{case}");
        assert_eq!(out.attention_mask, rows(&case["attention_mask"]), "{case}");
    }
    assert!(matches!(
        tok.encode_batch(
            &["x"],
            &BatchOptions {
                padding: Padding::Longest,
                max_length: Some(1)
            }
        ),
        Err(TokenizerError::MaxLength(1))
    ));
}

fn check_decode(tok: &Florence2Tokenizer, c: &Value) -> usize {
    let mut checked = 0;
    for case in c["decode"].as_array().unwrap() {
        let ids = ids(&case["ids"]);
        if ids.iter().any(|&id| id as usize >= tok.vocab_size()) {
            continue; // `<image>`: only in transformers' converted file
        }
        let skip = case["skip_special_tokens"].as_bool().unwrap();
        let got = tok.decode(&ids, skip).unwrap();
        assert_eq!(got, case["text"].as_str().unwrap(), "{case}");
        checked += 1;
    }
    checked
}

#[test]
fn decode_matches_transformers() {
    let c = cases();
    let total = c["decode"].as_array().unwrap().len();
    assert!(check_decode(&tokenizer(), &c) >= total - 4);
    let converted = Florence2Tokenizer::from_file(fixture("tokenizer_converted.json")).unwrap();
    assert_eq!(check_decode(&converted, &c), total);
}

#[test]
fn task_prompts_match_transformers() {
    for case in cases()["prompts"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        match (construct_prompt(prompt), case.get("sentence")) {
            (Ok(sentence), Some(expected)) => {
                assert_eq!(sentence, expected.as_str().unwrap(), "{prompt:?}")
            }
            (Err(ProcessorError::TaskNotAlone { task, .. }), None) => {
                let expected = case["error"].as_str().unwrap();
                assert!(
                    expected.starts_with(&format!("Task token {task} ")),
                    "{prompt:?}: {task} vs {expected}"
                );
            }
            (got, _) => panic!("{prompt:?}: got {got:?}, expected {case}"),
        }
    }
}

fn processor(height: usize, width: usize) -> Florence2Processor {
    Florence2Processor::new(tokenizer(), ImageConfig::default().with_size(height, width))
}

/// transformers' ids without the leading `<image>` placeholders, checked to be exactly those.
fn without_image_tokens(c: &Value, row: &[u32]) -> Vec<u32> {
    let image = c["image_token_id"].as_u64().unwrap() as u32;
    let n = c["image_seq_length"].as_u64().unwrap() as usize;
    assert!(row[..n].iter().all(|&t| t == image));
    assert!(!row[n..].contains(&image));
    row[n..].to_vec()
}

#[test]
fn prompt_ids_match_the_processor() {
    let c = cases();
    let p = processor(64, 64);
    for case in c["processor"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let expected = without_image_tokens(&c, &ids(&case["input_ids"]));
        assert_eq!(p.prompt_ids(prompt).unwrap(), expected, "{prompt:?}");
    }
    let batch = &c["processor_batch"];
    let prompts: Vec<&str> = batch["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let out = p.prompt_batch(&prompts, &BatchOptions::default()).unwrap();
    let n = c["image_seq_length"].as_u64().unwrap() as usize;
    let expected: Vec<Vec<u32>> = rows(&batch["input_ids"])
        .iter()
        .map(|r| without_image_tokens(&c, r))
        .collect();
    let mask: Vec<Vec<u32>> = rows(&batch["attention_mask"])
        .iter()
        .map(|r| r[n..].to_vec())
        .collect();
    assert_eq!(out.input_ids, expected);
    assert_eq!(out.attention_mask, mask);
    assert!(matches!(
        p.prompt_ids("<OD> and more"),
        Err(ProcessorError::TaskNotAlone { .. })
    ));
}

fn reference_pixels() -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture("pixel_values.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, view)| view.dtype() == safetensors::Dtype::F32)
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), data))
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn pixel_values_match_transformers_pil_backend() {
    let reference = reference_pixels();
    let rgb = load_image(fixture("image.png")).unwrap();
    let rgba = load_image(fixture("image_rgba.png")).unwrap();
    for (name, image, h, w) in [
        ("pil_64x64", &rgb, 64, 64),
        ("pil_40x72", &rgb, 40, 72),
        ("pil_77x101", &rgb, 77, 101),
        ("pil_rgba_32x32", &rgba, 32, 32),
    ] {
        let config = ImageConfig::default().with_size(h, w);
        let got = preprocess_images(std::slice::from_ref(image), &config).unwrap();
        let (shape, expected) = &reference[name];
        assert_eq!(got.shape.as_slice(), shape.as_slice(), "{name}");
        let diff = max_abs_diff(&got.data, expected);
        println!("{name}: max |rust - pil| = {diff:e}");
        assert!(diff <= PIL_TOLERANCE, "{name}: {diff}");
    }
}

#[test]
fn pixel_values_against_the_torchvision_backend() {
    // transformers' default backend (torchvision) resizes with its own uint8 kernel, which can
    // differ from Pillow by one level of 255 in a few pixels; Microsoft's processor used PIL.
    let reference = reference_pixels();
    let rgb = load_image(fixture("image.png")).unwrap();
    let config = ImageConfig::default().with_size(64, 64);
    let got = preprocess_images(&[rgb], &config).unwrap();
    let diff = max_abs_diff(&got.data, &reference["torchvision_64x64"].1);
    let recorded = cases()["pil_vs_torchvision_max_abs_64x64"]
        .as_f64()
        .unwrap() as f32;
    println!("max |rust - torchvision| = {diff:e} (pil vs torchvision: {recorded:e})");
    assert!((diff - recorded).abs() <= PIL_TOLERANCE);
    assert!(diff <= 1.0 / 255.0 / 0.224 + 1e-4);
}

/// Max difference, in 8-bit levels, between the `image` crate's JPEG decoding (zune-jpeg) and
/// Pillow's (libjpeg-turbo) on the 4:2:0 fixture. Measured: 3 levels (about a quarter of the
/// values differ, mostly by 1), 0.0523 in normalised units after resizing to 64x64.
const JPEG_LEVELS: u8 = 3;

#[test]
fn jpeg_decoding_against_pillow() {
    let bytes = std::fs::read(fixture("pixel_values.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let pil = st.tensor("jpeg_decoded_rgb8").unwrap();
    let jpeg = load_image(fixture("image.jpg")).unwrap();
    let rust = jpeg.to_rgb8().into_raw();
    assert_eq!(pil.shape(), [77, 101, 3]);
    let levels = rust
        .iter()
        .zip(pil.data())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    let differing = rust.iter().zip(pil.data()).filter(|(a, b)| a != b).count();
    println!(
        "jpeg: max {levels} levels, {differing} of {} values differ",
        rust.len()
    );
    assert!(levels <= JPEG_LEVELS, "{levels}");
    let got = preprocess_images(&[jpeg], &ImageConfig::default().with_size(64, 64)).unwrap();
    let diff = max_abs_diff(&got.data, &reference_pixels()["pil_jpeg_64x64"].1);
    println!("jpeg 64x64: max |rust - pil| = {diff:e}");
    assert!(
        diff <= f32::from(JPEG_LEVELS) / 255.0 / 0.224 + 1e-6,
        "{diff}"
    );
}

#[test]
fn pixel_values_become_a_burn_tensor() {
    let p = processor(16, 24);
    let rgb = load_image(fixture("image.png")).unwrap();
    let pixels = p.preprocess(&[rgb.clone(), rgb]).unwrap();
    assert_eq!(pixels.shape, [2, 3, 16, 24]);
    let tensor = pixels.to_tensor::<Flex>(&Default::default());
    assert_eq!(tensor.dims(), [2, 3, 16, 24]);
    let back = tensor.into_data().to_vec::<f32>().unwrap();
    assert_eq!(back, pixels.data);
}

#[test]
fn missing_image_file_names_the_path() {
    let err = load_image(fixture("no_such_image.png")).unwrap_err();
    assert!(err.to_string().contains("no_such_image.png"), "{err}");
}

#[test]
fn preprocessor_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("preprocessor_config.json");
    std::fs::write(
        &path,
        r#"{"do_center_crop": false, "do_normalize": true, "do_rescale": true,
            "do_resize": true, "image_mean": [0.485, 0.456, 0.406],
            "image_processor_type": "CLIPImageProcessor", "image_seq_length": 577,
            "image_std": [0.229, 0.224, 0.225], "processor_class": "Florence2Processor",
            "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"height": 768, "width": 768}}"#,
    )
    .unwrap();
    assert_eq!(
        ImageConfig::from_preprocessor_config(&path).unwrap(),
        ImageConfig::default()
    );
    std::fs::write(&path, r#"{"size": {"shortest_edge": 224}}"#).unwrap();
    let err = ImageConfig::from_preprocessor_config(&path).unwrap_err();
    assert!(matches!(err, ProcessorError::Config { .. }), "{err}");
}

#[test]
fn corrupt_or_missing_tokenizer_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, "{\"version\": \"1.0\", \"model\": ").unwrap();
    let err = Florence2Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Parse { path: p, .. } if p == &path),
        "{err}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));

    let missing = dir.path().join("absent.json");
    let err = Florence2Tokenizer::from_file(&missing).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Read { path: p, .. } if p == &missing),
        "{err}"
    );

    // A valid tokenizer.json without BART's special tokens.
    let text = std::fs::read_to_string(fixture("tokenizer.json"))
        .unwrap()
        .replace("\"<pad>\"", "\"<nopad>\"");
    std::fs::write(&path, text).unwrap();
    let err = Florence2Tokenizer::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::MissingToken { token, .. } if token == "<pad>"),
        "{err}"
    );
}

fn write_model_dir(dir: &Path, weights: &str, tokenizer: bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    std::fs::write(dir.join(weights), b"weights").unwrap();
    if tokenizer {
        std::fs::copy(fixture("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    }
}

#[test]
fn local_folder_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("Florence-2-tiny");
    write_model_dir(&dir, "model.safetensors", true);
    std::fs::write(dir.join("pytorch_model.bin"), b"older").unwrap();
    // The options would fail any hub access: a folder never touches the hub.
    let files =
        Florence2Files::resolve_with(dir.to_str().unwrap(), &offline_hub(tmp.path())).unwrap();
    assert_eq!(files.weights, dir.join("model.safetensors"));
    assert_eq!(files.weights_format, WeightsFormat::Safetensors);
    assert_eq!(files.config, dir.join("config.json"));
    assert_eq!(files.tokenizer, dir.join("tokenizer.json"));
    assert_eq!(files.preprocessor_config, None);
    assert_eq!(files.source, ModelSource::Local(dir.clone()));
    assert_eq!(files.dir(), dir.as_path());
    Florence2Tokenizer::from_file(&files.tokenizer).unwrap();

    let original = tmp.path().join("original");
    write_model_dir(&original, "pytorch_model.bin", true);
    std::fs::write(
        original.join("preprocessor_config.json"),
        r#"{"size": {"height": 384, "width": 384}, "resample": 3}"#,
    )
    .unwrap();
    let files = Florence2Files::from_dir(&original).unwrap();
    let p = Florence2Processor::from_files(&files).unwrap();
    assert_eq!(
        p.image_config(),
        &ImageConfig::default().with_size(384, 384)
    );
    assert_eq!(p.prompt_ids("<OD>").unwrap().first(), Some(&0));
    assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
    assert_eq!(
        files.preprocessor_config,
        Some(original.join("preprocessor_config.json"))
    );

    let no_tok = tmp.path().join("no_tokenizer");
    write_model_dir(&no_tok, "model.safetensors", false);
    let err = Florence2Files::from_dir(&no_tok).unwrap_err();
    assert!(
        matches!(&err, HubError::MissingFile { file, .. } if file == "tokenizer.json"),
        "{err}"
    );
    std::fs::remove_file(no_tok.join("model.safetensors")).unwrap();
    let err = Florence2Files::from_dir(&no_tok).unwrap_err();
    assert!(
        err.to_string()
            .contains("model.safetensors or pytorch_model.bin"),
        "{err}"
    );

    let err = Florence2Files::resolve_with("./no/such/dir", &offline_hub(tmp.path())).unwrap_err();
    assert!(matches!(err, HubError::InvalidModel(_)), "{err}");
}

/// Lays out `models--org--name/{refs/main, snapshots/<sha>/...}` as huggingface_hub does.
fn fake_cache(cache: &Path, repo: &str, files: &[&str]) -> PathBuf {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let sha = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
    std::fs::write(repo_dir.join("refs/main"), sha).unwrap();
    let snapshot = repo_dir.join("snapshots").join(sha);
    std::fs::create_dir_all(&snapshot).unwrap();
    for file in files {
        std::fs::write(snapshot.join(file), b"{}").unwrap();
    }
    snapshot
}

#[test]
fn offline_mode_reads_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let snapshot = fake_cache(
        &cache,
        "microsoft/Florence-2-base",
        &[
            "config.json",
            "pytorch_model.bin",
            "tokenizer.json",
            "preprocessor_config.json",
        ],
    );
    let files =
        Florence2Files::resolve_with("microsoft/Florence-2-base", &offline_hub(&cache)).unwrap();
    assert_eq!(files.weights, snapshot.join("pytorch_model.bin"));
    assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
    assert_eq!(files.tokenizer, snapshot.join("tokenizer.json"));
    assert_eq!(
        files.preprocessor_config,
        Some(snapshot.join("preprocessor_config.json"))
    );
    assert_eq!(
        files.source,
        ModelSource::Hub {
            repo: "microsoft/Florence-2-base".into(),
            revision: "main".into()
        }
    );
    // Even online, a fully cached model needs no network.
    let online = HubOptions {
        offline: false,
        endpoint: Some("http://127.0.0.1:9".into()),
        ..offline_hub(&cache)
    };
    assert_eq!(
        Florence2Files::resolve_with("microsoft/Florence-2-base", &online).unwrap(),
        files
    );
}

#[test]
fn offline_mode_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    fake_cache(
        &cache,
        "florence-community/Florence-2-base",
        &["config.json", "model.safetensors"],
    );
    let err =
        Florence2Files::resolve_with("florence-community/Florence-2-base", &offline_hub(&cache))
            .unwrap_err();
    match &err {
        HubError::NotInCache {
            repo,
            file,
            cache: c,
            ..
        } => {
            assert_eq!(repo, "florence-community/Florence-2-base");
            assert_eq!(file, "tokenizer.json");
            assert_eq!(c, &cache);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");
    let err = Florence2Files::resolve_with("microsoft/Florence-2-large", &offline_hub(&cache))
        .unwrap_err();
    assert!(
        matches!(&err, HubError::NotInCache { file, .. } if file == "config.json"),
        "{err}"
    );
}

#[test]
fn hub_options_follow_the_environment_variables() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    };
    let o = HubOptions::from_vars(vars(&[("HF_HUB_OFFLINE", "1"), ("HF_HOME", "/h")]));
    assert!(o.offline);
    assert_eq!(o.cache_dir, PathBuf::from("/h/hub"));
    let o = HubOptions::from_vars(vars(&[
        ("HF_HUB_OFFLINE", "0"),
        ("HF_HOME", "/h"),
        ("HF_HUB_CACHE", "/c"),
        ("HF_TOKEN", "t"),
    ]));
    assert!(!o.offline);
    assert_eq!(o.cache_dir, PathBuf::from("/c"));
    assert_eq!(o.token.as_deref(), Some("t"));
    assert_eq!(o.revision, "main");
    for on in ["1", "true", "YES", "On"] {
        let o = HubOptions::from_vars(move |k: &str| (k == "HF_HUB_OFFLINE").then(|| on.into()));
        assert!(o.offline, "{on}");
    }
    let o = HubOptions::from_vars(vars(&[("TRANSFORMERS_OFFLINE", "1")]));
    assert!(o.offline);
    assert!(o.cache_dir.ends_with("huggingface/hub"));
}

#[test]
fn post_processing_matches_transformers() {
    let c = cases();
    let p = processor(64, 64);
    let banned: std::collections::HashSet<&str> = c["banned_grounding_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        banned,
        BANNED_GROUNDING_TOKENS.iter().copied().collect(),
        "banned grounding phrases"
    );
    let cases = c["post_process"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let task = case["task"].as_str().unwrap();
        let size = case["image_size"].as_array().unwrap();
        let size = (
            size[0].as_u64().unwrap() as u32,
            size[1].as_u64().unwrap() as u32,
        );
        let got = answer_json(&p.post_process(text, task, size));
        assert_eq!(got, case["result"], "{task} {text:?}");
    }
}

/// The answer in the shape transformers returns it.
fn answer_json(answer: &Florence2Answer) -> Value {
    use serde_json::json;
    match answer {
        Florence2Answer::Text(t) => json!(t),
        Florence2Answer::Boxes { bboxes, labels } => json!({"bboxes": bboxes, "labels": labels}),
        Florence2Answer::QuadBoxes { quad_boxes, labels } => {
            json!({"quad_boxes": quad_boxes, "labels": labels})
        }
        Florence2Answer::Polygons { polygons, labels } => {
            json!({"polygons": polygons, "labels": labels})
        }
        Florence2Answer::BoxesOrPolygons {
            bboxes,
            bboxes_labels,
            polygons,
            polygons_labels,
        } => json!({
            "bboxes": bboxes, "bboxes_labels": bboxes_labels,
            "polygons": polygons, "polygons_labels": polygons_labels,
        }),
    }
}

//! Florence-2's tokenizer, processor and hub resolution against transformers 5.24
//! (fixtures made by scripts/generate_florence2_text_fixtures.py; see the README beside them).

#[path = "../common/mod.rs"]
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

mod hub;
mod pixels;

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

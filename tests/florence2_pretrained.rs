//! The Florence-2 pipeline (`Florence2Pipeline`): checkpoint folder -> model + processor ->
//! answers, without the network.
//!
//! The tiny random model (`tests/fixtures/florence2/tiny_native`, vocab 96) cannot hold the text
//! fixtures' tokenizer (`tests/fixtures/florence2_text/tokenizer.json`: 701 BPE tokens + 1024
//! Florence-2 tokens = 1725). So:
//! * the tiny folder with that tokenizer must be refused with a typed error;
//! * a "wide" copy of the tiny checkpoint, whose `shared` embedding table gets rows 96..1724
//!   (deterministic values; rows 0..95 unchanged) and whose `config.json` says vocab 1725, runs
//!   the whole pipeline; its answers are checked against the parts run by hand (processor,
//!   `Florence2::generate`, decode, post-process). Both folders come from
//!   `tests/common/florence2_wide.rs` (shared with `tests/rlaif_pipeline.rs`).

mod common;

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use common::florence2_wide::{
    WIDE_IMAGE_SIZE as IMAGE_SIZE, WIDE_VOCAB as TOKENIZER_VOCAB, offline_options,
    tiny_florence2_folder as tiny_folder, wide_florence2_folder as wide_folder,
};
use fedvlm::models::florence2::hub::{Florence2Files, HubError};
use fedvlm::models::florence2::processor::{
    Florence2Answer, Florence2Processor, ImageConfig, ProcessorError, load_image, preprocess_images,
};
use fedvlm::models::florence2::{
    Florence2, Florence2Config, Florence2Pipeline, Florence2Query, GenerationConfig, PipelineError,
};
use image::DynamicImage;
use tempfile::TempDir;

type B = Flex;

fn text_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/florence2_text")
        .join(name)
}

fn pipeline(dir: &Path) -> Florence2Pipeline<B> {
    let cache = TempDir::new().expect("tempdir");
    let model = dir.to_str().expect("utf-8 path");
    Florence2Pipeline::from_pretrained_with(
        model,
        &offline_options(cache.path()),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn images() -> Vec<DynamicImage> {
    ["image.png", "image_rgba.png"]
        .iter()
        .map(|f| load_image(text_fixture(f)).expect("fixture image"))
        .collect()
}

fn queries() -> Vec<Florence2Query> {
    vec![
        Florence2Query::new("<OD>"),
        Florence2Query::new("What is in the picture?"),
    ]
}

fn small_config(num_beams: usize) -> GenerationConfig {
    GenerationConfig {
        num_beams,
        max_new_tokens: 12,
        ..GenerationConfig::florence2()
    }
}

/// The generation of the pipeline equals `Florence2::generate` on inputs made by hand: each
/// prompt through `construct_prompt` + tokenizer (padded by hand), each image resized to
/// 64x64 and normalised.
#[test]
fn generated_ids_equal_the_models_on_the_same_inputs() {
    let dir = wide_folder();
    let pipeline = pipeline(dir.path());
    let device = Default::default();
    let model = Florence2::<B>::load(dir.path(), &device).expect("wide model");
    let files = Florence2Files::from_dir(dir.path()).expect("files");
    let processor = Florence2Processor::from_files(&files).expect("processor");
    assert_eq!(
        processor.image_config(),
        &ImageConfig::default().with_size(IMAGE_SIZE, IMAGE_SIZE)
    );

    let images = images();
    let queries = queries();
    let rows: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| processor.prompt_ids(&q.prompt()).expect("prompt"))
        .collect();
    assert_ne!(
        rows[0].len(),
        rows[1].len(),
        "the batch should need padding"
    );
    let len = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for row in &rows {
        ids.extend(row.iter().map(|&id| i64::from(id)));
        ids.extend(std::iter::repeat_n(1i64, len - row.len()));
        mask.extend(std::iter::repeat_n(1i64, row.len()));
        mask.extend(std::iter::repeat_n(0i64, len - row.len()));
    }
    let pixels = preprocess_images(&images, processor.image_config()).expect("pixels");
    assert_eq!(pixels.shape, [2, 3, IMAGE_SIZE, IMAGE_SIZE]);

    for beams in [1, 3] {
        let config = small_config(beams);
        let expected = model
            .generate_masked(
                Tensor::from_data(TensorData::new(pixels.data.clone(), pixels.shape), &device),
                Tensor::from_data(TensorData::new(ids.clone(), [2, len]), &device),
                Some(Tensor::from_data(
                    TensorData::new(mask.clone(), [2, len]),
                    &device,
                )),
                &config,
            )
            .expect("generate");
        let got = pipeline
            .generate_ids(&images, &queries, &config)
            .expect("pipeline generate");
        assert_eq!(got, expected, "num_beams {beams}");
        assert!(got.iter().all(|row| row[0] == 2 && row[1] == 0), "{got:?}");
    }
}

/// Decoding and post-processing: each answer is the processor's parse of the decoded ids, with
/// the task's kind (boxes for `<OD>`, text for a question) and the original image's size.
#[test]
fn answers_are_the_processors_parse_of_the_generated_text() {
    let dir = wide_folder();
    let pipeline = pipeline(dir.path());
    let processor = pipeline.processor();
    let images = images();
    let queries = queries();
    let config = small_config(3);
    let generated = pipeline
        .generate_ids(&images, &queries, &config)
        .expect("generate");
    let outputs = pipeline
        .answer_batch(&images, &queries, &config)
        .expect("answers");
    assert_eq!(outputs.len(), 2);
    for (i, out) in outputs.iter().enumerate() {
        let eos = out.ids.iter().skip(1).position(|&id| id == 2);
        let trimmed = match eos {
            Some(end) => &generated[i][..end + 2],
            None => &generated[i][..],
        };
        assert_eq!(out.ids, trimmed, "row {i}: padding removed, nothing else");
        assert_eq!(out.text, processor.decode(&out.ids).expect("decode"));
        let size = (images[i].width(), images[i].height());
        assert_eq!(
            out.answer,
            processor.post_process(&out.text, &queries[i].task, size)
        );
    }
    match &outputs[0].answer {
        Florence2Answer::Boxes { bboxes, labels } => {
            assert!(!bboxes.is_empty(), "the wide model emits location tokens");
            assert_eq!(bboxes.len(), labels.len());
        }
        other => panic!("<OD> should give boxes, got {other:?}"),
    }
    assert!(
        matches!(outputs[1].answer, Florence2Answer::Text(_)),
        "{:?}",
        outputs[1]
    );

    // One image at a time gives the same answer as its row of the batch when the row needs no
    // padding (the longer prompt).
    let lengths: Vec<usize> = queries
        .iter()
        .map(|q| processor.prompt_ids(&q.prompt()).expect("prompt").len())
        .collect();
    let longest = usize::from(lengths[1] > lengths[0]);
    let single = pipeline
        .answer(&images[longest], &queries[longest], &config)
        .expect("single answer");
    assert_eq!(single, outputs[longest].answer);
    let from_file = pipeline
        .answer_file(text_fixture("image.png"), &queries[0], &config)
        .expect("answer from file");
    let direct = pipeline
        .answer(&images[0], &queries[0], &config)
        .expect("answer");
    assert_eq!(from_file, direct);
}

/// A task with an input is prompted as task + input; the defaults come from the model config.
#[test]
fn task_with_input_and_default_generation_settings() {
    let dir = wide_folder();
    let pipeline = pipeline(dir.path());
    let query = Florence2Query::new("<CAPTION_TO_PHRASE_GROUNDING>").with_input("a red square");
    assert_eq!(query.prompt(), "<CAPTION_TO_PHRASE_GROUNDING>a red square");
    let config = pipeline.generation_config();
    assert_eq!(config.num_beams, 3);
    assert_eq!(config.no_repeat_ngram_size, 3);
    assert_eq!(config.max_new_tokens, 1024);
    assert_eq!(config.forced_bos_token_id, Some(0));
    assert_eq!(config.eos_token_id, Some(2));
    // 1024 new tokens exceed the tiny decoder's 64 positions: the pipeline caps them.
    let greedy = GenerationConfig {
        num_beams: 1,
        ..config
    };
    let answer = pipeline
        .answer(&images()[0], &query, &greedy)
        .expect("capped generation");
    assert!(
        matches!(answer, Florence2Answer::Boxes { .. }),
        "{answer:?}"
    );
}

#[test]
fn tokenizer_larger_than_the_model_is_a_typed_error() {
    let dir = tiny_folder();
    let cache = TempDir::new().expect("tempdir");
    let model = dir.path().to_str().expect("utf-8 path");
    let err = Florence2Pipeline::<B>::from_pretrained_with(
        model,
        &offline_options(cache.path()),
        &Default::default(),
    )
    .expect_err("vocab 96 cannot take a 1725-token tokenizer");
    assert!(
        matches!(
            err,
            PipelineError::VocabMismatch {
                tokenizer: TOKENIZER_VOCAB,
                model: 96
            }
        ),
        "{err}"
    );

    // The same check when the parts are put together by hand.
    let device = Default::default();
    let model = Florence2::<B>::load(dir.path(), &device).expect("tiny model");
    let (config, _) = Florence2Config::from_file(dir.path().join("config.json")).expect("config");
    let files = Florence2Files::from_dir(dir.path()).expect("files");
    let processor = Florence2Processor::from_files(&files).expect("processor");
    let err =
        Florence2Pipeline::new(model, config, processor, &device).expect_err("mismatched parts");
    assert!(
        matches!(err, PipelineError::VocabMismatch { model: 96, .. }),
        "{err}"
    );
}

#[test]
fn special_token_disagreement_is_a_typed_error() {
    let dir = wide_folder();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("config")).expect("json");
    config["text_config"]["pad_token_id"] = 5.into();
    std::fs::write(&path, config.to_string()).expect("write config");
    let cache = TempDir::new().expect("tempdir");
    let err = Florence2Pipeline::<B>::from_pretrained_with(
        dir.path().to_str().expect("utf-8 path"),
        &offline_options(cache.path()),
        &Default::default(),
    )
    .expect_err("pad 1 in the tokenizer, 5 in the config");
    assert!(
        matches!(
            err,
            PipelineError::SpecialToken {
                token: "<pad>",
                tokenizer: 1,
                model: 5
            }
        ),
        "{err}"
    );
}

#[test]
fn folder_without_tokenizer_is_a_typed_error() {
    let dir = wide_folder();
    std::fs::remove_file(dir.path().join("tokenizer.json")).expect("remove tokenizer");
    let cache = TempDir::new().expect("tempdir");
    let err = Florence2Pipeline::<B>::from_pretrained_with(
        dir.path().to_str().expect("utf-8 path"),
        &offline_options(cache.path()),
        &Default::default(),
    )
    .expect_err("no tokenizer.json");
    match &err {
        PipelineError::Hub(HubError::MissingFile { dir: d, file }) => {
            assert_eq!(d, dir.path());
            assert_eq!(file, "tokenizer.json");
        }
        other => panic!("expected a missing tokenizer.json, got {other:?}"),
    }
    assert!(err.to_string().contains("missing tokenizer.json"), "{err}");
}

#[test]
fn offline_hub_id_not_in_cache_is_a_typed_error() {
    let cache = TempDir::new().expect("tempdir");
    let err = Florence2Pipeline::<B>::from_pretrained_with(
        "microsoft/Florence-2-base",
        &offline_options(cache.path()),
        &Default::default(),
    )
    .expect_err("empty cache, offline");
    match &err {
        PipelineError::Hub(HubError::NotInCache {
            repo,
            file,
            cache: dir,
            ..
        }) => {
            assert_eq!(repo, "microsoft/Florence-2-base");
            assert_eq!(file, "config.json");
            assert_eq!(dir, cache.path());
        }
        other => panic!("expected NotInCache, got {other:?}"),
    }
    let err = Florence2Pipeline::<B>::from_pretrained_with(
        "not a folder nor an id",
        &offline_options(cache.path()),
        &Default::default(),
    )
    .expect_err("invalid model name");
    assert!(
        matches!(err, PipelineError::Hub(HubError::InvalidModel(_))),
        "{err}"
    );
}

#[test]
fn bad_requests_are_typed_errors() {
    let dir = wide_folder();
    let pipeline = pipeline(dir.path());
    let config = small_config(1);
    let images = images();

    let err = pipeline
        .answer_batch(&images, &queries()[..1], &config)
        .expect_err("2 images, 1 query");
    assert!(
        matches!(
            err,
            PipelineError::BatchSize {
                images: 2,
                queries: 1
            }
        ),
        "{err}"
    );

    let err = pipeline
        .answer(
            &images[0],
            &Florence2Query::new("<CAPTION>").with_input("extra"),
            &config,
        )
        .expect_err("a task without input followed by text");
    assert!(
        matches!(
            err,
            PipelineError::Processor(ProcessorError::TaskNotAlone { .. })
        ),
        "{err}"
    );

    let err = pipeline
        .answer_file(dir.path().join("no_such_image.png"), &queries()[0], &config)
        .expect_err("missing image");
    assert!(
        matches!(err, PipelineError::Processor(ProcessorError::Image { .. })),
        "{err}"
    );

    let err = pipeline
        .answer(
            &images[0],
            &queries()[0],
            &GenerationConfig {
                num_beams: 0,
                ..config
            },
        )
        .expect_err("zero beams");
    assert!(matches!(err, PipelineError::Model(_)), "{err}");

    let empty = pipeline
        .answer_batch(&[], &[], &small_config(1))
        .expect("empty batch");
    assert!(empty.is_empty());
}

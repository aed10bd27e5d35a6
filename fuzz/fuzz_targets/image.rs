//! Image decoding on arbitrary bytes: RLAIF-V's in-memory decoding, and Florence-2's
//! `load_image` followed by pre-processing at a small size.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use fedvlm::data::RlaifVSample;
use fedvlm::models::florence2::processor::{ImageConfig, load_image, preprocess_images};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sample = RlaifVSample {
        question: String::new(),
        chosen: String::new(),
        origin_dataset: String::new(),
        image_bytes: data.to_vec(),
        source_file: Arc::from(Path::new("fuzz.parquet")),
        row_group: 0,
        row: 0,
    };
    let _ = sample.decode_image();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("image.png");
    std::fs::write(&path, data).expect("write");
    if let Ok(image) = load_image(&path) {
        let _ = preprocess_images(&[image], &ImageConfig::default().with_size(16, 16));
    }
});

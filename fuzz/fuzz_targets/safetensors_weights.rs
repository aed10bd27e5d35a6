//! MobileNetV3 and Florence-2 (native layout, the tiny fixture's `config.json`) from a
//! `.safetensors` file of arbitrary bytes (seed the corpus with the fixtures).
#![no_main]

use std::path::Path;

use burn::backend::Flex;
use fedvlm::models::florence2::Florence2;
use fedvlm::models::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use libfuzzer_sys::fuzz_target;

const TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/florence2/tiny_native/config.json"
);

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, data).expect("write");
    let device = Default::default();
    let config = MobileNetV3Config::small(10).with_width_mult(0.25);
    let _ = MobileNetV3::<Flex>::load_safetensors(&path, &config, &device);
    std::fs::copy(Path::new(TINY), dir.path().join("config.json")).expect("config");
    let _ = Florence2::<Flex>::load(dir.path(), &device);
});

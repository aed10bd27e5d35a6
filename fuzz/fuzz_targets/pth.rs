//! MobileNetV3 from a `torch.save` file of arbitrary bytes (seed the corpus with
//! `tests/fixtures/mobilenet_v3/small_w025.pth`).
#![no_main]

use burn::backend::Flex;
use fedvlm::models::mobilenet_v3::{MobileNetV3, MobileNetV3Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.pth");
    std::fs::write(&path, data).expect("write");
    let config = MobileNetV3Config::small(10).with_width_mult(0.25);
    let _ = MobileNetV3::<Flex>::load_torchvision(&path, &config, &Default::default());
});

//! The RLAIF-V parquet reader on arbitrary bytes (seed the corpus with real shards), in strict
//! mode with full image decoding and in the default mode.
#![no_main]

use fedvlm::data::{ImageCheck, RlaifVOptions, read_rlaif_v};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    std::fs::write(&path, data).expect("write");
    let strict = RlaifVOptions::new()
        .strict(true)
        .image_check(ImageCheck::Decode);
    for options in [strict, RlaifVOptions::new()] {
        let _ = read_rlaif_v(&[&path], &options, |sample| {
            let _ = sample.decode_image();
        });
    }
});

//! A checkpoint folder whose manifest (`checkpoint.json`) is the fuzzer's bytes:
//! `Checkpoint::load` answers with an error naming a file, or a checkpoint, never a panic.
#![no_main]

use fedvlm::federated::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("fedvlm-fuzz-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("checkpoint.json"), data).expect("write manifest");
    let _ = Checkpoint::load(&dir);
});

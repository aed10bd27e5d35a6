//! `Cifar10::load` on a folder of six zero-filled batch files (sparse) where the input replaces
//! the head of `data_batch_1.bin` (first byte 0: file size kept), the whole of it (1), or
//! `batches.meta.txt` (2).
#![no_main]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use fedvlm::data::{CIFAR10_FILE_BYTES, Cifar10};
use libfuzzer_sys::fuzz_target;

fn write(path: &Path, head: &[u8], len: u64) {
    let mut file = File::create(path).expect("create");
    file.write_all(head).expect("write");
    file.set_len(len.max(head.len() as u64)).expect("set_len");
}

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in Cifar10::TRAIN_FILES.iter().chain([&Cifar10::TEST_FILE]) {
            write(&dir.path().join(name), &[], CIFAR10_FILE_BYTES);
        }
        dir
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let dir = dir();
    let batch = dir.join(Cifar10::TRAIN_FILES[0]);
    let meta = dir.join(Cifar10::META_FILE);
    match mode % 3 {
        0 => write(&batch, rest, CIFAR10_FILE_BYTES),
        1 => write(&batch, rest, rest.len() as u64),
        _ => std::fs::write(&meta, rest).expect("meta"),
    }
    let _ = Cifar10::load(dir);
    write(&batch, &[], CIFAR10_FILE_BYTES);
    let _ = std::fs::remove_file(&meta);
});

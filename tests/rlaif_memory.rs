//! Peak memory of `fedvlm_rlaif --model tiny-random` does not grow with the dataset: the
//! example (run as a child process, built here if needed) reads synthetic RLAIF-V shards of
//! 2,000 and 8,000 rows with long (about 700-byte) answers, keeps each row's image and text in
//! a file as it reads them (decoding images per batch, reading text back per row while
//! tokenising), caches the frozen prefix on disk, and trains one round of one epoch; its peak
//! RSS (`VmHWM`, printed by the example) differs by less than 25% between the two. (Holding
//! every row's text until tokenisation, as the reader once did, makes them 31% apart with
//! these answers in a release build; spilling it, 23%; keeping token ids and the test samples'
//! text in the file too, 4% in a debug build: 66.3 and 69.1 MB.) A second run over the same
//! output folder reuses the on-disk cache: it runs no frozen-prefix forward pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::rlaif_shards::write_rows_with_answers;

/// Words each answer goes on for: about 700 bytes, as RLAIF-V's long chosen answers, so that
/// text held per row would show in the peak.
const ANSWER_WORDS: usize = 150;

/// Source names: one non-ASCII and longer than the table's 24-character label.
const SOURCES: [&str; 3] = ["alpha_vqa", "béta-çaptions-über-lång-näme", "gamma"];

/// Runs `command` to completion within `limit`, killing it (by its PID) past that; returns
/// its stdout.
fn run_bounded(mut command: Command, limit: Duration) -> String {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = command
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::from(err.reopen().unwrap()))
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "{command:?} ran past {limit:?}; stderr:\n{}",
                std::fs::read_to_string(err.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    assert!(
        status.success(),
        "{command:?}: {status}\nstdout:\n{stdout}\nstderr:\n{}",
        std::fs::read_to_string(err.path()).unwrap_or_default()
    );
    stdout
}

/// The example's binary, built (in this test binary's profile) if needed.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--example", "fedvlm_rlaif", "--manifest-path"]);
    build.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    build.env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
    run_bounded(build, Duration::from_secs(1800));
    let bin = profile_dir.join("examples/fedvlm_rlaif");
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// One run over `data` into `out`: its stdout.
fn run_example(bin: &Path, data: &Path, out: &Path) -> String {
    let mut command = Command::new(bin);
    command
        .args([
            "--model",
            "tiny-random",
            "--sharing",
            "plora",
            "--clients",
            "3",
        ])
        .args(["--rounds", "1", "--local-epochs", "1", "--lr", "1e-3"])
        .args(["--batch-size", "64", "--eval-batch-size", "256"])
        .args(["--cache-batch-size", "128", "--test-fraction", "0.05"])
        // The RAM budget of hot cache shards: bounded, so it does not scale with the rows.
        .args(["--cache-mib", "1"])
        .args(["--answers-per-client", "1", "--max-answer-len", "8"])
        .args(["--answer-eval-limit", "8"])
        .arg("--data-dir")
        .arg(data)
        .arg("--out")
        .arg(out);
    run_bounded(command, Duration::from_secs(600))
}

fn number_before(text: &str, marker: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no `{marker}` in:\n{text}"));
    let before = &line[..line.find(marker).unwrap()];
    before
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{marker}` in `{line}`"))
}

fn peak_kib(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("peak RSS:"))
        .unwrap_or_else(|| panic!("no peak RSS in:\n{stdout}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn peak_memory_does_not_grow_with_rows_and_a_second_run_reuses_the_cache() {
    let bin = example_binary();
    let mut peaks = Vec::new();
    for rows in [2000usize, 8000] {
        let data = tempfile::tempdir().unwrap();
        write_rows_with_answers(data.path(), rows, &SOURCES, 8, ANSWER_WORDS);
        let out = tempfile::tempdir().unwrap();
        let stdout = run_example(&bin, data.path(), out.path());
        assert!(
            stdout.contains(&format!("{rows} samples from 3 sources")),
            "{stdout}"
        );
        assert!(
            number_before(&stdout, "prefix forward passes") > 0,
            "{stdout}"
        );
        peaks.push(peak_kib(&stdout));
        eprintln!("{rows} rows: peak RSS {} KiB", peak_kib(&stdout));
        if rows == 2000 {
            // Same data, same output folder: the cache on disk is reused as it is.
            let again = run_example(&bin, data.path(), out.path());
            assert_eq!(number_before(&again, "prefix forward passes"), 0, "{again}");
            assert_eq!(number_before(&again, "built,"), 0, "{again}");
        }
    }
    let (small, large) = (peaks[0] as f64, peaks[1] as f64);
    assert!(
        (large - small).abs() < 0.25 * small,
        "peak RSS {small} KiB at 2,000 rows, {large} KiB at 8,000"
    );
}

//! The paper's main experiment (Section 4): Florence-2 fine-tuned on RLAIF-V with pLoRA across
//! clients that each hold one or more source datasets (non-IID) or a random share (`--iid`),
//! compared with FedAvg-LoRA (FLoRA) and FFA-LoRA, or trained centrally (`--centralized`,
//! Figure 2).
//!
//! ```text
//! cargo run --release --example fedvlm_rlaif                   # the paper's settings, CPU
//! cargo run --release --example fedvlm_rlaif -- --quick        # a few minutes on a CPU
//! cargo run --release --example fedvlm_rlaif --features cuda   # on an NVIDIA GPU
//! ```
//!
//! The RLAIF-V shards come from `--data-dir` (a folder with `RLAIF-V-Dataset_*.parquet`) or
//! the hub dataset `openbmb/RLAIF-V-Dataset`; the model from `--model` (a hub id or a folder
//! with `config.json`, `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`).
//! Offline (`HF_HUB_OFFLINE=1`) only local folders and the Hugging Face cache are read.
//! Writes `<out>/<run>/{metrics.jsonl, config.json, checkpoint/, answers.jsonl}` (`--resume`
//! continues from the checkpoints), `<out>/rounds.csv`, `<out>/accuracy.svg` (mean test
//! accuracy and loss per round, one line per run: Figures 3 and 5), and prints a table shaped
//! like Tables 3 and 4 (per client, before fine-tuning and after the last round).

mod args;

use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::experiments::rlaif::{RlaifData, RuleRun, run_rule};
use fedvlm::federated::{LabelledRun, write_csv, write_svg_chart};
use fedvlm::metrics::ClassificationMetrics;

use args::{AnyError, Args};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => {
            if let Some(kib) = peak_rss_kib() {
                println!("peak RSS: {kib} KiB");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// This process's peak resident memory (`VmHWM` of `/proc/self/status`, Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run(args: &Args) -> Result<(), AnyError> {
    let config = args.config();
    config.validate()?;
    let rules = match args.sharing {
        Some(rule) => vec![rule],
        None if config.centralized => vec![Sharing::PLora],
        None => args.compare.clone(),
    };
    let device = Default::default();
    let started = Instant::now();

    println!(
        "rules: {}",
        rules
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let prepared = args.prepare::<B>(&device)?;
    let data = prepared.data.clone();
    std::fs::create_dir_all(&args.out)?;
    let inputs = prepared.inputs(Some(&args.out), args.resume, true, device);
    let mut runs = Vec::new();
    for &rule in &rules {
        let t = Instant::now();
        let run = run_rule(&inputs, rule)?;
        let rounds = run.reports.iter().filter(|r| r.round > 0).count().max(1);
        println!(
            "{}: {:.1} s ({:.2} s per round this session)",
            run.name,
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() / rounds as f64
        );
        runs.push(run);
    }

    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|r| LabelledRun {
            label: &r.name,
            reports: &r.reports,
        })
        .collect();
    write_csv(args.out.join("rounds.csv"), &labelled)?;
    write_svg_chart(
        args.out.join("accuracy.svg"),
        "RLAIF-V, Florence-2: mean per-client test accuracy and loss",
        &labelled,
    )?;
    print_table(&runs, &data);
    args::robustness::print_privacy(
        runs.iter()
            .map(|run| (run.name.as_str(), run.reports.as_slice())),
    );
    for run in &runs {
        if let Some(answer) = run.answers.first() {
            println!(
                "{} client {}: Q: {} | reference: {} | generated: {}",
                run.name, answer.client, answer.question, answer.reference, answer.generated
            );
        }
    }
    println!(
        "\nwrote {}/{{rounds.csv, accuracy.svg, <run>/metrics.jsonl, <run>/answers.jsonl}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Per run and client: token accuracy, precision, recall, F1 and loss on the client's test
/// split before fine-tuning (round 0, "w/o ft") and after the last round.
fn print_table(runs: &[RuleRun], data: &RlaifData) {
    println!(
        "\n{:<20} {:<24} {:>5} | {:>7} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "run",
        "client (sources)",
        "round",
        "acc w/o",
        "prec",
        "recall",
        "f1",
        "loss",
        "acc",
        "prec",
        "recall",
        "f1",
        "loss"
    );
    let cells = |m: Option<ClassificationMetrics>| match m {
        Some(m) => format!(
            "{:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4}",
            m.accuracy, m.precision, m.recall, m.f1, m.loss
        ),
        None => format!("{:>7} {:>7} {:>7} {:>7} {:>7}", "-", "-", "-", "-", "-"),
    };
    for run in runs {
        let (Some(first), Some(last)) = (
            run.reports.iter().find(|r| r.round == 0),
            run.reports.last(),
        ) else {
            continue;
        };
        for k in 0..data.num_trainers() {
            let before = first.clients.get(k).and_then(|c| c.test);
            let after = last.clients.get(k).and_then(|c| c.test);
            // At most 24 characters, cut on a character boundary (source names need not be
            // ASCII).
            let label: String = format!("{k} ({})", data.sources[k].join("+"))
                .chars()
                .take(24)
                .collect();
            println!(
                "{:<20} {:<24} {:>5} | {} | {}",
                run.name,
                label,
                last.round,
                cells(before),
                cells(after)
            );
        }
        println!(
            "{:<20} {:<24} {:>5} | {} | {}",
            run.name,
            "mean",
            last.round,
            cells(first.mean_test),
            cells(last.mean_test)
        );
    }
}

//! The paper's CIFAR-10 experiment (Figure 4): an ImageNet-pretrained MobileNetV3 fine-tuned
//! with pLoRA and with LoRA (FedAvg-LoRA) across 40 clients holding 2 label-sorted shards each,
//! 150 rounds of 3 local epochs.
//!
//! ```text
//! cargo run --release --example cifar10_mobilenet                  # the paper's settings
//! cargo run --release --example cifar10_mobilenet -- --quick       # a few minutes on a laptop
//! cargo run --release --example cifar10_mobilenet --features cuda  # on an NVIDIA GPU
//! ```
//!
//! CIFAR-10 (binary version) is downloaded into `--data-dir` and torchvision's ImageNet
//! weights into torch's hub cache when missing (`FEDVLM_OFFLINE=1` forbids it). Writes
//! `<out>/<rule>/metrics.jsonl`, a checkpoint after every round (`--resume` continues),
//! `<out>/rounds.csv`, `<out>/accuracy.svg`, and prints a final table.

mod args;

use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::FedError;
use fedvlm::experiments::cifar10::run_rule;
use fedvlm::federated::{LabelledRun, write_csv, write_svg_chart};

use args::Args;

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

fn main() -> Result<(), FedError> {
    let args = Args::parse();
    let config = args.config();
    config.validate()?;
    let rules = match args.sharing {
        Some(rule) => vec![rule],
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

    std::fs::create_dir_all(&args.out).map_err(|e| FedError::io(&args.out, e))?;
    let inputs = prepared.inputs(Some(&args.out), args.resume, true, device);
    let mut runs = Vec::new();
    for &rule in &rules {
        let t = Instant::now();
        let run = run_rule(&inputs, rule)?;
        let rounds = run.reports.iter().filter(|r| r.round > 0).count().max(1);
        println!(
            "{rule}: {:.1} s ({:.2} s per round this session)",
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() / rounds as f64
        );
        runs.push(run);
    }

    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|r| LabelledRun {
            label: r.sharing.name(),
            reports: &r.reports,
        })
        .collect();
    write_csv(args.out.join("rounds.csv"), &labelled)?;
    write_svg_chart(
        args.out.join("accuracy.svg"),
        "CIFAR-10, MobileNetV3: mean per-client test accuracy",
        &labelled,
    )?;

    println!(
        "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "rule", "acc w/o", "acc", "prec", "recall", "f1", "global"
    );
    for run in &runs {
        let first = run.reports.first().and_then(|r| r.mean_test);
        let last = run.reports.last();
        let m = last.and_then(|r| r.mean_test);
        let global = run
            .reports
            .iter()
            .rev()
            .find_map(|r| r.mean_global_test)
            .map_or(f64::NAN, |g| g.accuracy);
        let f = |v: Option<f64>| v.map_or(f64::NAN, |v| v);
        println!(
            "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
            run.sharing.name(),
            f(first.map(|m| m.accuracy)),
            f(m.map(|m| m.accuracy)),
            f(m.map(|m| m.precision)),
            f(m.map(|m| m.recall)),
            f(m.map(|m| m.f1)),
            global
        );
    }
    args::robustness::print_privacy(
        runs.iter()
            .map(|run| (run.sharing.name(), run.reports.as_slice())),
    );
    println!(
        "\nwrote {}/{{rounds.csv, accuracy.svg, <rule>/metrics.jsonl}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

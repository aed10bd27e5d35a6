//! The paper's main experiment (Section 4): Florence-2 fine-tuned on RLAIF-V with pLoRA across
//! clients that each hold one or more source datasets (non-IID) or a random share (`--iid`),
//! compared with FedAvg-LoRA (FLoRA) and FFA-LoRA, or trained centrally (`--centralized`, or
//! both with `--vs-centralized`: Figure 2). `--dataset okvqa` runs on OK-VQA (IID clients,
//! Figure 2a); `--clients-sweep 2,4,6,8` runs the client ablation (Table 4).
//!
//! ```text
//! cargo run --release --example fedvlm_rlaif                   # the paper's settings, CPU
//! cargo run --release --example fedvlm_rlaif -- --quick        # a few minutes on a CPU
//! cargo run --release --example fedvlm_rlaif --features cuda   # on an NVIDIA GPU
//! cargo run --release --example fedvlm_rlaif -- --dataset okvqa --clients 4 --vs-centralized
//! cargo run --release --example fedvlm_rlaif -- --clients-sweep 2,4,6,8   # Table 4
//! ```
//!
//! The RLAIF-V shards come from `--data-dir` (a folder with `RLAIF-V-Dataset_*.parquet`) or
//! the hub dataset `openbmb/RLAIF-V-Dataset`; the model from `--model` (a hub id or a folder
//! with `config.json`, `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`).
//! Offline (`HF_HUB_OFFLINE=1`) only local folders and the Hugging Face cache are read.
//! Writes `<out>/<run>/{metrics.jsonl, config.json, checkpoint/, answers.jsonl}` (`--resume`
//! continues from the checkpoints), `<out>/<run>/answer_metrics.jsonl`, `<out>/rounds.csv`,
//! `<out>/accuracy.svg` (mean teacher-forced token accuracy and loss per round, one line per
//! run: Figures 3 and 5), `<out>/answer_metrics.csv` (generated answers scored per client and
//! round: exact match, token F1, VQA accuracy), and prints tables shaped like Tables 3 and 4
//! (per client, before fine-tuning and after the last round). The sweep writes
//! `<out>/clients-<n>/<run>/...` per count and `<out>/clients_sweep.{md,csv}`.

mod args;
mod tables;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::experiments::rlaif::sweep::{
    SweepInputs, run_clients_sweep, sweep_dir_name, validate_client_counts,
};
use fedvlm::experiments::rlaif::{RlaifConfig, RuleRun, centralized, run_rule, write_answer_csv};
use fedvlm::experiments::vqa::ImageStore;
use fedvlm::federated::{LabelledRun, MetricNames, write_csv_named, write_svg_chart_named};

use args::{AnyError, Args, dataset};

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
    if !args.clients_sweep.is_empty() {
        return run_sweep(args, &config);
    }
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
    if args.vs_centralized {
        // One trainer over the same samples (and cache), the same rounds and epochs.
        let central_config = RlaifConfig {
            centralized: true,
            ..prepared.config.clone()
        };
        let central = fedvlm::experiments::rlaif::RunInputs {
            config: &central_config,
            data: std::sync::Arc::new(centralized(&data)),
            ..prepared.inputs(Some(&args.out), args.resume, true, Default::default())
        };
        let t = Instant::now();
        let run = run_rule(&central, Sharing::PLora)?;
        println!("{}: {:.1} s", run.name, t.elapsed().as_secs_f64());
        runs.push(run);
    }

    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|r| LabelledRun {
            label: &r.name,
            reports: &r.reports,
        })
        .collect();
    write_csv_named(args.out.join("rounds.csv"), &labelled, MetricNames::Token)?;
    write_svg_chart_named(
        args.out.join("accuracy.svg"),
        &format!(
            "{}, Florence-2: mean per-client test token accuracy (teacher-forced) and loss",
            args.dataset
        ),
        &labelled,
        MetricNames::Token,
    )?;
    write_answers_csv(
        args,
        &runs.iter().map(|r| (r.name.clone(), r)).collect::<Vec<_>>(),
    )?;
    tables::print_token_table(&runs, &data);
    tables::print_answer_table(&runs, &data);
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
        "\nwrote {}/{{rounds.csv, accuracy.svg, answer_metrics.csv, <run>/metrics.jsonl, \
         <run>/answer_metrics.jsonl, <run>/answers.jsonl}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--clients-sweep`: one federation per client count with one rule, and the Table 4-shaped
/// table.
fn run_sweep(args: &Args, config: &RlaifConfig) -> Result<(), AnyError> {
    validate_client_counts(&args.clients_sweep)?;
    let rule = args.sharing.unwrap_or(Sharing::PLora);
    let device = Default::default();
    let started = Instant::now();
    let files = dataset::find_files(args)?;
    let model = args.load_model::<B>(&device)?;
    let most = args.clients_sweep.iter().copied().max().unwrap_or(1);
    let cache_root = args.cache_dir();
    let store = Arc::new(ImageStore::temporary(&cache_root)?);
    let rows = dataset::load_rows(args, &files, config, most, &store)?;
    println!("{}", rows.summary());
    println!(
        "client sweep {:?}, rule {}, {} rounds x {} local epochs",
        args.clients_sweep,
        rule.name(),
        config.rounds,
        config.local_epochs
    );
    std::fs::create_dir_all(&args.out)?;
    let inputs = SweepInputs {
        config,
        counts: &args.clients_sweep,
        rows: rows.rows(),
        images: &[],
        base: &model.base,
        processor: &model.processor,
        generation: model.generation.clone(),
        sharing: rule,
        out_dir: Some(&args.out),
        resume: args.resume,
        progress: true,
        device,
    };
    // One on-disk cache per count (each count draws its own samples), reused by --resume.
    let (table, runs) = run_clients_sweep(&inputs, |config, data| {
        let dir = cache_root.join(sweep_dir_name(config.clients));
        args.cache_for(&model.base, config, data, &Default::default(), &dir)
    })?;
    let labels: Vec<String> = runs
        .iter()
        .map(|(n, run)| format!("{n} clients {}", run.name))
        .collect();
    let labelled: Vec<LabelledRun> = runs
        .iter()
        .zip(&labels)
        .map(|((_, run), label)| LabelledRun {
            label,
            reports: &run.reports,
        })
        .collect();
    write_csv_named(args.out.join("rounds.csv"), &labelled, MetricNames::Token)?;
    write_svg_chart_named(
        args.out.join("accuracy.svg"),
        &format!(
            "{}, Florence-2: client ablation, mean per-client test token accuracy (teacher-forced) and loss",
            args.dataset
        ),
        &labelled,
        MetricNames::Token,
    )?;
    write_answers_csv(
        args,
        &runs
            .iter()
            .zip(&labels)
            .map(|((_, run), label)| (label.clone(), run))
            .collect::<Vec<_>>(),
    )?;
    println!("\n{}", table.markdown());
    println!(
        "wrote {}/{{clients_sweep.md, clients_sweep.csv, rounds.csv, accuracy.svg, \
         answer_metrics.csv, clients-<n>/}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `<out>/answer_metrics.csv`: every run's generated-answer scores per client and round.
fn write_answers_csv(args: &Args, runs: &[(String, &RuleRun)]) -> Result<(), AnyError> {
    let answer_runs: Vec<(&str, &[_])> = runs
        .iter()
        .map(|(label, r)| (label.as_str(), r.answer_metrics.as_slice()))
        .collect();
    write_answer_csv(&args.out.join("answer_metrics.csv"), &answer_runs)?;
    Ok(())
}

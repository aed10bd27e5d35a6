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
//! continues from the checkpoints), `<out>/<run>/answer_metrics.jsonl`, `<out>/rounds.csv`,
//! `<out>/accuracy.svg` (mean teacher-forced token accuracy and loss per round, one line per
//! run: Figures 3 and 5), `<out>/answer_metrics.csv` (generated answers scored per client and
//! round: exact match, token F1, VQA accuracy), and prints tables shaped like Tables 3 and 4
//! (per client, before fine-tuning and after the last round).

mod args;

use std::process::ExitCode;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::experiments::rlaif::{RlaifData, RuleRun, run_rule, write_answer_csv};
use fedvlm::federated::{LabelledRun, MetricNames, write_csv_named, write_svg_chart_named};
use fedvlm::metrics::{AnswerMetrics, ClassificationMetrics};

use args::{AnyError, Args};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
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
    write_csv_named(args.out.join("rounds.csv"), &labelled, MetricNames::Token)?;
    write_svg_chart_named(
        args.out.join("accuracy.svg"),
        "RLAIF-V, Florence-2: mean per-client test token accuracy (teacher-forced) and loss",
        &labelled,
        MetricNames::Token,
    )?;
    let answer_runs: Vec<(&str, &[_])> = runs
        .iter()
        .map(|r| (r.name.as_str(), r.answer_metrics.as_slice()))
        .collect();
    write_answer_csv(&args.out.join("answer_metrics.csv"), &answer_runs)?;
    print_table(&runs, &data);
    print_answer_table(&runs, &data);
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

/// Per run and client: teacher-forced token accuracy, precision, recall, F1 (the leading `<s>`
/// left out) and loss on the client's test split before fine-tuning (round 0, "w/o ft") and
/// after the last round.
fn print_table(runs: &[RuleRun], data: &RlaifData) {
    println!("\nteacher-forced next-token scores (not answer accuracy; see the answer table)");
    println!(
        "{:<20} {:<24} {:>5} | {:>7} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "run",
        "client (sources)",
        "round",
        "tok_acc",
        "tok_p",
        "tok_r",
        "tok_f1",
        "loss",
        "tok_acc",
        "tok_p",
        "tok_r",
        "tok_f1",
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
            let mut label = format!("{k} ({})", data.sources[k].join("+"));
            label.truncate(24);
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

/// Per run and client: generated answers' exact match, token F1 and (with human answers) VQA
/// accuracy on the client's test split before fine-tuning (round 0) and after the last scored
/// round.
fn print_answer_table(runs: &[RuleRun], data: &RlaifData) {
    println!("\ngenerated answers (w/o ft = round 0 | after the last scored round)");
    println!(
        "{:<20} {:<24} {:>5} | {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>5}",
        "run", "client (sources)", "round", "em w/o", "f1", "vqa", "em", "f1", "vqa", "n"
    );
    let cells = |m: Option<&AnswerMetrics>| match m {
        Some(m) => format!(
            "{:>7.4} {:>7.4} {:>7}",
            m.exact_match,
            m.token_f1,
            m.vqa_accuracy
                .map_or("-".to_string(), |v| format!("{v:.4}"))
        ),
        None => format!("{:>7} {:>7} {:>7}", "-", "-", "-"),
    };
    for run in runs {
        let (Some(first), Some(last)) = (
            run.answer_metrics.iter().find(|r| r.round == 0),
            run.answer_metrics.last(),
        ) else {
            continue;
        };
        for k in 0..data.num_trainers() {
            let before = first.clients.get(k).and_then(Option::as_ref);
            let after = last.clients.get(k).and_then(Option::as_ref);
            let label: String = format!("{k} ({})", data.sources[k].join("+"))
                .chars()
                .take(24)
                .collect();
            println!(
                "{:<20} {:<24} {:>5} | {} | {} {:>5}",
                run.name,
                label,
                last.round,
                cells(before),
                cells(after),
                after.map_or(0, |m| m.count)
            );
        }
        println!(
            "{:<20} {:<24} {:>5} | {} | {} {:>5}",
            run.name,
            "mean",
            last.round,
            cells(first.mean.as_ref()),
            cells(last.mean.as_ref()),
            last.mean.as_ref().map_or(0, |m| m.count)
        );
    }
}

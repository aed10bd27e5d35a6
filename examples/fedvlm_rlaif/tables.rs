//! The tables the example prints: teacher-forced token scores and generated-answer scores per
//! run and client, before fine-tuning ("w/o ft") and after the last round (Tables 3 and 4).

use fedvlm::experiments::rlaif::{RlaifData, RuleRun};
use fedvlm::metrics::{AnswerMetrics, ClassificationMetrics};

/// Row label of trainer `k` out of `trainers`: its sources, or "all clients' data" for the
/// centralised trainer; at most 24 characters (cut on a character boundary).
fn label(data: &RlaifData, k: usize, trainers: usize) -> String {
    let label = match data.sources.get(k) {
        Some(sources) if trainers == data.num_trainers() => {
            format!("{k} ({})", sources.join("+"))
        }
        _ => format!("{k} (all clients' data)"),
    };
    label.chars().take(24).collect()
}

/// Per run and client: teacher-forced token accuracy, precision, recall, F1 (the leading `<s>`
/// left out) and loss on the client's test split before fine-tuning (round 0, "w/o ft") and
/// after the last round.
pub fn print_token_table(runs: &[RuleRun], data: &RlaifData) {
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
        let trainers = last.clients.len();
        for k in 0..trainers {
            let before = first.clients.get(k).and_then(|c| c.test);
            let after = last.clients.get(k).and_then(|c| c.test);
            println!(
                "{:<20} {:<24} {:>5} | {} | {}",
                run.name,
                label(data, k, trainers),
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
pub fn print_answer_table(runs: &[RuleRun], data: &RlaifData) {
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
        let trainers = last.clients.len();
        for k in 0..trainers {
            let before = first.clients.get(k).and_then(Option::as_ref);
            let after = last.clients.get(k).and_then(Option::as_ref);
            println!(
                "{:<20} {:<24} {:>5} | {} | {} {:>5}",
                run.name,
                label(data, k, trainers),
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

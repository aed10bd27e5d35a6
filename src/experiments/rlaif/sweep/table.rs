//! The client ablation's table ([`ClientsSweep`]): per client count, the mean per-client test
//! scores before fine-tuning ("w/o ft", round 0) and after the last round, written as markdown
//! and CSV. Teacher-forced token scores (`token_*`, from [`RoundReport::mean_test`]) and,
//! when the answer-level evaluation ran, the generated answers' exact match, token F1 and VQA
//! accuracy (from [`AnswerRoundReport::mean`]).

use std::fmt::Write as _;
use std::path::Path;

use super::{SWEEP_CSV_FILE, SWEEP_MARKDOWN_FILE};
use crate::error::{FedError, Result};
use crate::experiments::rlaif::answers::AnswerRoundReport;
use crate::federated::RoundReport;
use crate::metrics::{AnswerMetrics, ClassificationMetrics};

/// One client count's two rows of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepEntry {
    /// The number of clients.
    pub clients: usize,
    /// The last round run.
    pub rounds: u64,
    /// The mean per-client test token metrics before fine-tuning (round 0, "w/o ft").
    pub before: ClassificationMetrics,
    /// The mean per-client test token metrics after the last round.
    pub after: ClassificationMetrics,
    /// The mean per-client generated-answer scores before fine-tuning (`None` when the
    /// answer-level evaluation did not run).
    pub answers_before: Option<AnswerMetrics>,
    /// The mean per-client generated-answer scores of the last scored round.
    pub answers_after: Option<AnswerMetrics>,
}

/// The client ablation's table: one [`SweepEntry`] per client count, in the order run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientsSweep {
    /// The entries.
    pub entries: Vec<SweepEntry>,
}

impl ClientsSweep {
    /// Builds the table from each client count's reports (round 0 first, as
    /// [`super::run_rule`] returns them), without answer-level scores.
    ///
    /// # Errors
    /// As [`Self::from_runs`].
    pub fn from_reports<'a>(
        runs: impl IntoIterator<Item = (usize, &'a [RoundReport])>,
    ) -> Result<Self> {
        Self::from_runs(runs.into_iter().map(|(n, r)| (n, r, &[][..])))
    }

    /// Builds the table from each client count's round reports and answer-level reports
    /// (either may start at round 0; empty answer reports leave the answer columns blank).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a count's reports lack round 0, a round after it, or
    /// a mean test score.
    pub fn from_runs<'a>(
        runs: impl IntoIterator<Item = (usize, &'a [RoundReport], &'a [AnswerRoundReport])>,
    ) -> Result<Self> {
        let mut entries = Vec::new();
        for (clients, reports, answers) in runs {
            let missing = |what: &str| {
                FedError::config(
                    "clients_sweep",
                    format!("the {clients}-client run has no {what}"),
                )
            };
            let before = reports
                .iter()
                .find(|r| r.round == 0)
                .ok_or_else(|| missing("round 0 (scores before fine-tuning)"))?;
            let after = reports
                .iter()
                .rfind(|r| r.round > 0)
                .ok_or_else(|| missing("fine-tuning round"))?;
            let answers_before = answers.iter().find(|r| r.round == 0);
            let answers_after = answers.iter().rfind(|r| r.round > 0);
            entries.push(SweepEntry {
                clients,
                rounds: after.round,
                before: before
                    .mean_test
                    .ok_or_else(|| missing("test score before fine-tuning"))?,
                after: after
                    .mean_test
                    .ok_or_else(|| missing("test score after fine-tuning"))?,
                answers_before: answers_before.and_then(|r| r.mean),
                answers_after: answers_after.and_then(|r| r.mean),
            });
        }
        Ok(Self { entries })
    }

    /// The table in markdown, shaped like the paper's Table 4: per client count a `w/o ft`
    /// row (before fine-tuning) and a row after the last round; `-` where a score is missing.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| Number of clients | Token accuracy (Avg.) | Token precision (Avg.) | \
             Token recall (Avg.) | Token F1-score (Avg.) | Loss (Avg.) | \
             Answer exact match (Avg.) | Answer token F1 (Avg.) | VQA accuracy (Avg.) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let two = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        for e in &self.entries {
            for (label, m, a) in [
                (
                    format!("{} w/o ft", e.clients),
                    &e.before,
                    &e.answers_before,
                ),
                (
                    format!("{} (round {})", e.clients, e.rounds),
                    &e.after,
                    &e.answers_after,
                ),
            ] {
                let _ = writeln!(
                    out,
                    "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                    m.accuracy,
                    m.precision,
                    m.recall,
                    m.f1,
                    m.loss,
                    two(a.as_ref().map(|a| a.exact_match)),
                    two(a.as_ref().map(|a| a.token_f1)),
                    two(a.as_ref().and_then(|a| a.vqa_accuracy)),
                );
            }
        }
        out
    }

    /// The table as CSV: `clients,fine_tuned,round,token_accuracy,token_precision,
    /// token_recall,token_f1,loss,count,exact_match,answer_token_f1,vqa_accuracy,
    /// answer_count`, two rows per client count (`fine_tuned` false for round 0; `count` is
    /// the mean's [`ClassificationMetrics::count`]; the answer columns are empty when not
    /// scored).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "clients,fine_tuned,round,token_accuracy,token_precision,token_recall,token_f1,loss,\
             count,exact_match,answer_token_f1,vqa_accuracy,answer_count\n",
        );
        let cell = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        for e in &self.entries {
            for (fine_tuned, round, m, a) in [
                (false, 0, &e.before, &e.answers_before),
                (true, e.rounds, &e.after, &e.answers_after),
            ] {
                let _ = writeln!(
                    out,
                    "{},{fine_tuned},{round},{},{},{},{},{},{},{},{},{},{}",
                    e.clients,
                    m.accuracy,
                    m.precision,
                    m.recall,
                    m.f1,
                    m.loss,
                    m.count,
                    cell(a.as_ref().map(|a| a.exact_match)),
                    cell(a.as_ref().map(|a| a.token_f1)),
                    cell(a.as_ref().and_then(|a| a.vqa_accuracy)),
                    a.as_ref().map_or(String::new(), |a| a.count.to_string()),
                );
            }
        }
        out
    }

    /// Writes [`SWEEP_MARKDOWN_FILE`] and [`SWEEP_CSV_FILE`] into `dir` (created if needed).
    ///
    /// # Errors
    /// [`FedError::Io`] when a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
        for (name, text) in [
            (SWEEP_MARKDOWN_FILE, self.markdown()),
            (SWEEP_CSV_FILE, self.csv()),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| FedError::io(&path, e))?;
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(accuracy: f64, loss: f64) -> ClassificationMetrics {
        ClassificationMetrics {
            accuracy,
            precision: accuracy / 2.0,
            recall: accuracy,
            f1: accuracy / 3.0,
            loss,
            count: 7,
        }
    }

    fn report(round: u64, mean: Option<ClassificationMetrics>) -> RoundReport {
        RoundReport {
            round,
            sharing: "plora".into(),
            strategy: "fedavg".into(),
            sampled: Vec::new(),
            clients: Vec::new(),
            rejected: Vec::new(),
            failed: Vec::new(),
            aggregated: true,
            privacy: None,
            mean_test: mean,
            mean_global_test: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn the_table_has_a_without_ft_row_and_a_final_row_per_client_count() {
        let two = vec![
            report(0, Some(metrics(0.33, 5.92))),
            report(1, Some(metrics(0.5, 2.0))),
            report(2, Some(metrics(0.98, 0.11))),
        ];
        let four = vec![
            report(0, Some(metrics(0.25, 6.0))),
            report(1, Some(metrics(0.9, 0.13))),
        ];
        let table = ClientsSweep::from_reports([(2, two.as_slice()), (4, four.as_slice())])
            .expect("a table");
        assert_eq!(table.entries.len(), 2);
        assert_eq!(table.entries[0].clients, 2);
        assert_eq!(table.entries[0].rounds, 2);
        assert_eq!(table.entries[0].before, metrics(0.33, 5.92));
        assert_eq!(table.entries[0].after, metrics(0.98, 0.11));
        assert_eq!(table.entries[1].before, metrics(0.25, 6.0));

        let md = table.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 2 + 4, "{md}");
        assert!(lines[0].starts_with("| Number of clients | Token accuracy (Avg.)"));
        assert_eq!(
            lines[2],
            "| 2 w/o ft | 0.33 | 0.17 | 0.33 | 0.11 | 5.92 | - | - | - |"
        );
        assert_eq!(
            lines[3],
            "| 2 (round 2) | 0.98 | 0.49 | 0.98 | 0.33 | 0.11 | - | - | - |"
        );
        assert!(lines[4].starts_with("| 4 w/o ft | 0.25 |"));
        assert!(lines[5].starts_with("| 4 (round 1) | 0.90 |"));

        let csv = table.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 4);
        assert_eq!(
            rows[0],
            "clients,fine_tuned,round,token_accuracy,token_precision,token_recall,token_f1,loss,\
             count,exact_match,answer_token_f1,vqa_accuracy,answer_count"
        );
        assert_eq!(rows[1], "2,false,0,0.33,0.165,0.33,0.11,5.92,7,,,,");
        assert!(rows[2].starts_with("2,true,2,0.98,"));
        assert!(rows[3].starts_with("4,false,0,0.25,"));
        assert!(rows[4].starts_with("4,true,1,0.9,"));
        for row in &rows {
            assert_eq!(row.split(',').count(), 13, "{row}");
        }

        let dir = tempfile::tempdir().expect("a temporary folder");
        table.write(dir.path()).expect("written");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SWEEP_MARKDOWN_FILE)).expect("markdown"),
            md
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SWEEP_CSV_FILE)).expect("csv"),
            csv
        );
    }

    #[test]
    fn runs_without_round_zero_or_scores_are_refused() {
        let no_round_zero = vec![report(1, Some(metrics(0.5, 1.0)))];
        let no_training = vec![report(0, Some(metrics(0.5, 1.0)))];
        let no_score = vec![report(0, None), report(1, Some(metrics(0.5, 1.0)))];
        for reports in [no_round_zero, no_training, no_score] {
            let err = ClientsSweep::from_reports([(3, reports.as_slice())]).unwrap_err();
            assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
        }
    }

    fn answers(round: u64, exact: f64, vqa: Option<f64>) -> AnswerRoundReport {
        let mean = AnswerMetrics {
            exact_match: exact,
            token_f1: exact + 0.25,
            vqa_accuracy: vqa,
            count: 4,
            vqa_count: if vqa.is_some() { 4 } else { 0 },
        };
        AnswerRoundReport {
            round,
            clients: vec![Some(mean)],
            mean: Some(mean),
        }
    }

    #[test]
    fn answer_scores_fill_their_columns() {
        let reports = vec![
            report(0, Some(metrics(0.33, 5.92))),
            report(1, Some(metrics(0.5, 2.0))),
        ];
        let scored = vec![answers(0, 0.25, Some(0.3)), answers(1, 0.5, Some(0.6))];
        let table =
            ClientsSweep::from_runs([(4, reports.as_slice(), scored.as_slice())]).expect("a table");
        let e = &table.entries[0];
        assert_eq!(e.answers_before.as_ref().map(|a| a.exact_match), Some(0.25));
        assert_eq!(
            e.answers_after.as_ref().and_then(|a| a.vqa_accuracy),
            Some(0.6)
        );
        let md = table.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[2].ends_with("| 0.25 | 0.50 | 0.30 |"), "{md}");
        assert!(lines[3].ends_with("| 0.50 | 0.75 | 0.60 |"), "{md}");
        let csv = table.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert!(rows[1].ends_with(",0.25,0.5,0.3,4"), "{csv}");
        assert!(rows[2].ends_with(",0.5,0.75,0.6,4"), "{csv}");
    }
}

//! The client ablation (the paper's Table 4): one federation per client count over the same
//! rows (non-IID by source for RLAIF-V, IID for OK-VQA), and one table of the mean per-client
//! test metrics before fine-tuning ("w/o ft", round 0) and after the last round.
//!
//! * [`ClientsSweep`]: the table, built from each count's reports
//!   ([`ClientsSweep::from_reports`]), written as markdown and CSV ([`ClientsSweep::write`]).
//! * [`run_clients_sweep`]: prepares the data, builds the cache (through the caller's
//!   closure) and runs one rule per count, each in `<out>/clients-<n>/`.
//!
//! The metrics are the teacher-forced next-token ones ([`ClassificationMetrics`] of
//! [`RoundReport::mean_test`]), so the columns say "token".

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;

use super::config::RlaifConfig;
use super::data::RlaifData;
use super::pipeline::{RuleRun, RunInputs, run_rule};
use super::rows::VqaRows;
use crate::error::{FedError, Result};
use crate::experiments::vqa::FrozenPrefixCache;
use crate::federated::RoundReport;
use crate::lora::Sharing;
use crate::metrics::ClassificationMetrics;
use crate::models::florence2::processor::Florence2Processor;
use crate::models::florence2::{Florence2, GenerationConfig};

/// The markdown table's file name in the output folder.
pub const SWEEP_MARKDOWN_FILE: &str = "clients_sweep.md";
/// The CSV table's file name in the output folder.
pub const SWEEP_CSV_FILE: &str = "clients_sweep.csv";

/// The output sub-folder of one client count's federation: `clients-<n>`.
pub fn sweep_dir_name(clients: usize) -> String {
    format!("clients-{clients}")
}

/// Checks a list of client counts: non-empty, each at least 1, no repeats.
///
/// # Errors
/// [`FedError::InvalidConfig`] naming the problem.
pub fn validate_client_counts(counts: &[usize]) -> Result<()> {
    if counts.is_empty() {
        return Err(FedError::config(
            "clients_sweep",
            "needs at least one count",
        ));
    }
    if counts.contains(&0) {
        return Err(FedError::config(
            "clients_sweep",
            "client counts must be at least 1",
        ));
    }
    for (i, n) in counts.iter().enumerate() {
        if counts[..i].contains(n) {
            return Err(FedError::config(
                "clients_sweep",
                format!("client count {n} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// One client count's two rows of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepEntry {
    /// The number of clients.
    pub clients: usize,
    /// The last round run.
    pub rounds: u64,
    /// The mean per-client test metrics before fine-tuning (round 0, "w/o ft").
    pub before: ClassificationMetrics,
    /// The mean per-client test metrics after the last round.
    pub after: ClassificationMetrics,
}

/// The client ablation's table: one [`SweepEntry`] per client count, in the order run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientsSweep {
    /// The entries.
    pub entries: Vec<SweepEntry>,
}

impl ClientsSweep {
    /// Builds the table from each client count's reports (round 0 first, as
    /// [`run_rule`] returns them).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a count's reports lack round 0, a round after it, or
    /// a mean test score.
    pub fn from_reports<'a>(
        runs: impl IntoIterator<Item = (usize, &'a [RoundReport])>,
    ) -> Result<Self> {
        let mut entries = Vec::new();
        for (clients, reports) in runs {
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
            entries.push(SweepEntry {
                clients,
                rounds: after.round,
                before: before
                    .mean_test
                    .ok_or_else(|| missing("test score before fine-tuning"))?,
                after: after
                    .mean_test
                    .ok_or_else(|| missing("test score after fine-tuning"))?,
            });
        }
        Ok(Self { entries })
    }

    /// The table in markdown, shaped like the paper's Table 4: per client count a `w/o ft`
    /// row (before fine-tuning) and a row after the last round.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| Number of clients | Token accuracy (Avg.) | Token precision (Avg.) | \
             Token recall (Avg.) | Token F1-score (Avg.) | Loss (Avg.) |\n\
             |---|---:|---:|---:|---:|---:|\n",
        );
        for e in &self.entries {
            for (label, m) in [
                (format!("{} w/o ft", e.clients), &e.before),
                (format!("{} (round {})", e.clients, e.rounds), &e.after),
            ] {
                let _ = writeln!(
                    out,
                    "| {label} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                    m.accuracy, m.precision, m.recall, m.f1, m.loss
                );
            }
        }
        out
    }

    /// The table as CSV: `clients,fine_tuned,round,token_accuracy,token_precision,
    /// token_recall,token_f1,loss,count`, two rows per client count (`fine_tuned` false
    /// for round 0; `count` is the mean's [`ClassificationMetrics::count`]).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "clients,fine_tuned,round,token_accuracy,token_precision,token_recall,token_f1,loss,count\n",
        );
        for e in &self.entries {
            for (fine_tuned, round, m) in [(false, 0, &e.before), (true, e.rounds, &e.after)] {
                let _ = writeln!(
                    out,
                    "{},{fine_tuned},{round},{},{},{},{},{},{}",
                    e.clients, m.accuracy, m.precision, m.recall, m.f1, m.loss, m.count
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

/// Everything [`run_clients_sweep`] needs besides the cache.
pub struct SweepInputs<'a, B: AutodiffBackend> {
    /// The settings; `clients` is replaced by each count, and the runs are federated.
    pub config: &'a RlaifConfig,
    /// The client counts, in the order run.
    pub counts: &'a [usize],
    /// The rows every count draws from.
    pub rows: VqaRows<'a>,
    /// The frozen pre-trained model.
    pub base: &'a Florence2<B>,
    /// The processor.
    pub processor: &'a Florence2Processor,
    /// How answers are generated.
    pub generation: GenerationConfig,
    /// The rule every count runs.
    pub sharing: Sharing,
    /// Where `clients-<n>/<run>/...` and the table go; `None` writes nothing.
    pub out_dir: Option<&'a Path>,
    /// Continue each count from its checkpoint.
    pub resume: bool,
    /// Show progress bars.
    pub progress: bool,
    /// The device.
    pub device: B::Device,
}

/// Runs one federation per client count and builds the table (written into `out_dir` when
/// set). `cache` builds a count's frozen-prefix cache from its settings and data (and may
/// free the data's cached pixels); returning `None` runs without one.
///
/// # Errors
/// [`FedError::InvalidConfig`] for bad counts or settings (more non-IID clients than
/// sources, centralised training asked for); the data's, the cache's and [`run_rule`]'s
/// errors.
pub fn run_clients_sweep<B: AutodiffBackend>(
    inputs: &SweepInputs<'_, B>,
    mut cache: impl FnMut(&RlaifConfig, &mut RlaifData) -> Result<Option<Arc<FrozenPrefixCache>>>,
) -> Result<(ClientsSweep, Vec<(usize, RuleRun)>)> {
    validate_client_counts(inputs.counts)?;
    if inputs.config.centralized {
        return Err(FedError::config(
            "clients_sweep",
            "compares federations of several client counts; centralised training has one",
        ));
    }
    let mut runs = Vec::with_capacity(inputs.counts.len());
    for &clients in inputs.counts {
        let config = RlaifConfig {
            clients,
            ..inputs.config.clone()
        };
        let mut data = RlaifData::prepare(&config, inputs.rows, inputs.processor)?;
        let cache = cache(&config, &mut data)?;
        let dir = inputs.out_dir.map(|d| d.join(sweep_dir_name(clients)));
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
        }
        let run = run_rule(
            &RunInputs {
                config: &config,
                data: Arc::new(data),
                base: inputs.base,
                processor: inputs.processor,
                cache,
                generation: inputs.generation.clone(),
                out_dir: dir.as_deref(),
                resume: inputs.resume,
                progress: inputs.progress,
                device: inputs.device.clone(),
            },
            inputs.sharing,
        )?;
        runs.push((clients, run));
    }
    let table =
        ClientsSweep::from_reports(runs.iter().map(|(n, run)| (*n, run.reports.as_slice())))?;
    if let Some(dir) = inputs.out_dir {
        table.write(dir)?;
    }
    Ok((table, runs))
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
        assert_eq!(lines[2], "| 2 w/o ft | 0.33 | 0.17 | 0.33 | 0.11 | 5.92 |");
        assert_eq!(
            lines[3],
            "| 2 (round 2) | 0.98 | 0.49 | 0.98 | 0.33 | 0.11 |"
        );
        assert!(lines[4].starts_with("| 4 w/o ft | 0.25 |"));
        assert!(lines[5].starts_with("| 4 (round 1) | 0.90 |"));

        let csv = table.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 1 + 4);
        assert_eq!(
            rows[0],
            "clients,fine_tuned,round,token_accuracy,token_precision,token_recall,token_f1,loss,count"
        );
        assert_eq!(rows[1], "2,false,0,0.33,0.165,0.33,0.11,5.92,7");
        assert!(rows[2].starts_with("2,true,2,0.98,"));
        assert!(rows[3].starts_with("4,false,0,0.25,"));
        assert!(rows[4].starts_with("4,true,1,0.9,"));
        for row in &rows {
            assert_eq!(row.split(',').count(), 9, "{row}");
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

    #[test]
    fn client_counts_are_checked() {
        validate_client_counts(&[2, 4, 6, 8]).expect("the paper's counts");
        for bad in [&[][..], &[0, 2], &[2, 4, 2]] {
            assert!(validate_client_counts(bad).is_err(), "{bad:?}");
        }
    }
}

//! Per-round reports and their JSON-lines sink.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::metrics::ClassificationMetrics;

/// What one client did and scored in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRoundReport {
    /// Client index.
    pub client: usize,
    /// Whether the client was sampled (trained and sent an update) this round.
    pub participated: bool,
    /// Mean training loss over the local epochs, when it trained.
    pub train_loss: Option<f64>,
    /// Training examples seen per epoch.
    pub train_examples: usize,
    /// Bytes the client sent (its serialised update).
    pub bytes_up: usize,
    /// Bytes the client received (the serialised global state).
    pub bytes_down: usize,
    /// Wall-clock seconds of local training (not reproducible; excluded from comparisons).
    pub seconds: f64,
    /// Metrics of the personalised model (private tensors + new global) on the client's test split.
    pub test: Option<ClassificationMetrics>,
    /// Metrics of the personalised model on the global test set, if the task has one.
    pub global_test: Option<ClassificationMetrics>,
}

/// A client update the server refused, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The client.
    pub client: usize,
    /// The reason.
    pub reason: String,
}

/// Everything that happened in one round. Round 0 is the evaluation before fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Round number (0 = before fine-tuning).
    pub round: u64,
    /// The sharing rule's name.
    pub sharing: String,
    /// The strategy's name.
    pub strategy: String,
    /// Clients sampled this round.
    pub sampled: Vec<usize>,
    /// One entry per client, sampled or not.
    pub clients: Vec<ClientRoundReport>,
    /// Updates the server refused.
    pub rejected: Vec<Rejection>,
    /// Sampled clients that produced no update this round (their training failed, or fault
    /// injection dropped them), with the reason; they are left out of the aggregate.
    #[serde(default)]
    pub failed: Vec<Rejection>,
    /// Whether the server aggregated this round (`false`: too few accepted updates for
    /// `min_fit_clients`, or failures with `accept_failures` off; the global state is unchanged).
    #[serde(default = "aggregated_default")]
    pub aggregated: bool,
    /// Under a DP strategy, the privacy spent so far: `(epsilon, delta)` of the sampled Gaussian
    /// mechanism over the rounds aggregated, from Opacus's RDP accountant, at
    /// `delta = 1 / (total training examples)`.
    #[serde(default)]
    pub privacy: Option<(f64, f64)>,
    /// Unweighted mean over clients of the personalised test metrics.
    pub mean_test: Option<ClassificationMetrics>,
    /// Unweighted mean over clients of the global-test metrics.
    pub mean_global_test: Option<ClassificationMetrics>,
    /// Wall-clock seconds of the round.
    pub seconds: f64,
}

fn aggregated_default() -> bool {
    true
}

impl RoundReport {
    /// The report with every wall-clock field set to zero: what two runs with the same seed
    /// must agree on.
    pub fn without_timings(&self) -> Self {
        let mut report = self.clone();
        report.seconds = 0.0;
        for client in &mut report.clients {
            client.seconds = 0.0;
        }
        report
    }
}

/// Appends reports to a file, one JSON object per line.
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl JsonlWriter {
    /// Creates (or truncates) the file.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, false)
    }

    /// Opens the file for appending (to continue a resumed run).
    pub fn append(path: impl AsRef<Path>) -> Result<Self> {
        Self::open(path, true)
    }

    fn open(path: impl AsRef<Path>, append: bool) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::options()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .map_err(|e| FedError::io(&path, e))?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    /// Writes one report as a line and flushes.
    pub fn write(&mut self, report: &RoundReport) -> Result<()> {
        serde_json::to_writer(&mut self.out, report)?;
        writeln!(self.out).map_err(|e| FedError::io(&self.path, e))?;
        self.out.flush().map_err(|e| FedError::io(&self.path, e))
    }

    /// Reads the reports of a JSON-lines file written by a process that may have been killed:
    /// a last line without its newline (cut off mid-write) is left out; any other bad line is
    /// an error.
    pub fn read_complete(path: impl AsRef<Path>) -> Result<Vec<RoundReport>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FedError::io(path, e))?;
        let complete = match text.rfind('\n') {
            Some(end) => &text[..=end],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(FedError::from))
            .collect()
    }

    /// Reads every report of a JSON-lines file.
    pub fn read_all(path: impl AsRef<Path>) -> Result<Vec<RoundReport>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| FedError::io(path, e))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(FedError::from))
            .collect()
    }
}

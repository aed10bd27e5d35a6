//! The client ablation (the paper's Table 4): one federation per client count over the same
//! rows (non-IID by source for RLAIF-V, IID for OK-VQA), and one table of the mean per-client
//! test metrics before fine-tuning ("w/o ft", round 0) and after the last round.
//!
//! * [`table`]: [`ClientsSweep`], the table, built from each count's reports
//!   ([`ClientsSweep::from_runs`]), written as markdown and CSV ([`ClientsSweep::write`]).
//! * [`run_clients_sweep`]: prepares the data, builds the cache (through the caller's
//!   closure) and runs one rule per count, each in `<out>/clients-<n>/`.
//!
//! The table holds the teacher-forced next-token metrics (`token_*`, of
//! [`crate::federated::RoundReport::mean_test`]) and, when the answer-level evaluation ran,
//! the generated answers' exact match, token F1 and VQA accuracy.

pub mod table;

pub use table::{ClientsSweep, SweepEntry};

use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::AutodiffBackend;

use super::config::RlaifConfig;
use super::data::RlaifData;
use super::pipeline::{RuleRun, RunInputs, run_rule};
use super::rows::VqaRows;
use crate::error::{FedError, Result};
use crate::experiments::vqa::{EncodedBytes, FrozenPrefixCache};
use crate::lora::Sharing;
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

/// Everything [`run_clients_sweep`] needs besides the cache.
pub struct SweepInputs<'a, B: AutodiffBackend> {
    /// The settings; `clients` is replaced by each count, and the runs are federated.
    pub config: &'a RlaifConfig,
    /// The client counts, in the order run.
    pub counts: &'a [usize],
    /// The rows every count draws from.
    pub rows: VqaRows<'a>,
    /// Where each row's image went (`images[r]` for row `r`, e.g. an
    /// [`crate::experiments::vqa::ImageStore`]); empty keeps the rows' own bytes.
    pub images: &'a [EncodedBytes],
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
/// set). `cache` builds (or reuses from disk) a count's frozen-prefix cache from its settings
/// (`clients` is the count) and data; returning `None` runs without one.
///
/// # Errors
/// [`FedError::InvalidConfig`] for bad counts or settings (more non-IID clients than
/// sources, centralised training asked for); the data's, the cache's and [`run_rule`]'s
/// errors.
pub fn run_clients_sweep<B: AutodiffBackend>(
    inputs: &SweepInputs<'_, B>,
    mut cache: impl FnMut(&RlaifConfig, &RlaifData) -> Result<Option<Arc<FrozenPrefixCache>>>,
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
        let data = RlaifData::prepare_with_images(&config, inputs.rows, inputs.processor, |r| {
            Ok(inputs.images.get(r).cloned())
        })?;
        let cache = cache(&config, &data)?;
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
    let table = ClientsSweep::from_runs(
        runs.iter()
            .map(|(n, run)| (*n, run.reports.as_slice(), run.answer_metrics.as_slice())),
    )?;
    if let Some(dir) = inputs.out_dir {
        table.write(dir)?;
    }
    Ok((table, runs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_counts_are_checked() {
        validate_client_counts(&[2, 4, 6, 8]).expect("the paper's counts");
        for bad in [&[][..], &[0, 2], &[2, 4, 2]] {
            assert!(validate_client_counts(bad).is_err(), "{bad:?}");
        }
    }
}

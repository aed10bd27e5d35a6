//! Running a simulation into an output folder: reports, settings and a checkpoint every round,
//! and resuming from that folder. Shared by every experiment pipeline.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::atomic::write_atomic;
use super::checkpoint::Checkpoint;
use super::report::{JsonlWriter, RoundReport};
use super::simulation::Simulation;
use super::task::FederatedTask;
use crate::error::{FedError, Result};
use crate::strategy::Strategy;

/// The reports of one run (the callback receives each round's report as it is written).
pub const METRICS_FILE: &str = "metrics.jsonl";
/// The experiment's settings, compared on resume.
pub const SETTINGS_FILE: &str = "config.json";
/// The folder of the latest checkpoint.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// Runs `sim` writing into `dir`: [`METRICS_FILE`] (one [`RoundReport`] a line, round 0 first),
/// [`SETTINGS_FILE`] (`settings` as JSON) and [`CHECKPOINT_DIR`] after every round.
///
/// With `resume` and a checkpoint in `dir`, the run continues after the checkpoint's round, and
/// the reports up to it are kept (reports written after it, by a run stopped before its next
/// checkpoint, are dropped: those rounds run again). The saved settings must equal `settings`
/// once `same_but_rounds` has copied into them what may change between the two runs (usually
/// the number of rounds). Returns every report, the resumed ones included.
///
/// # Errors
/// I/O and serialisation errors naming the file, [`FedError::InvalidConfig`] when resuming
/// with other settings, and whatever the simulation returns.
pub fn run_in_dir<B, T, S, C>(
    sim: &mut Simulation<B, T, S>,
    dir: &Path,
    settings: &C,
    resume: bool,
    same_but_rounds: impl Fn(C) -> C,
) -> Result<Vec<RoundReport>>
where
    B: AutodiffBackend,
    T: FederatedTask<B>,
    S: Strategy,
    C: Serialize + DeserializeOwned + PartialEq,
{
    run_in_dir_with(sim, dir, settings, resume, same_but_rounds, |_, _| Ok(()))
}

/// [`run_in_dir`], calling `on_report` with the simulation and each new round's report after
/// the report is written and before the round's checkpoint is saved (so a run stopped in
/// between runs that round again, `on_report` included).
///
/// # Errors
/// As [`run_in_dir`], and whatever `on_report` returns.
pub fn run_in_dir_with<B, T, S, C>(
    sim: &mut Simulation<B, T, S>,
    dir: &Path,
    settings: &C,
    resume: bool,
    same_but_rounds: impl Fn(C) -> C,
    mut on_report: impl FnMut(&Simulation<B, T, S>, &RoundReport) -> Result<()>,
) -> Result<Vec<RoundReport>>
where
    B: AutodiffBackend,
    T: FederatedTask<B>,
    S: Strategy,
    C: Serialize + DeserializeOwned + PartialEq,
{
    std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
    let checkpoint = dir.join(CHECKPOINT_DIR);
    let metrics = dir.join(METRICS_FILE);
    let settings_file = dir.join(SETTINGS_FILE);
    let mut previous = Vec::new();
    if resume && Checkpoint::exists(&checkpoint) {
        check_same_settings(&settings_file, settings, same_but_rounds)?;
        sim.resume(&checkpoint)?;
        let done = sim.next_round() - 1;
        if metrics.is_file() {
            previous = JsonlWriter::read_complete(&metrics)?;
            previous.retain(|r| r.round <= done);
        }
    }
    write_atomic(&settings_file, &serde_json::to_vec_pretty(settings)?)?;
    // Rewrite the reports up to the checkpoint (atomically: a kill now loses nothing), so a run
    // stopped after its last checkpoint does not leave rounds that will be run again.
    let mut kept = Vec::new();
    for report in &previous {
        serde_json::to_writer(&mut kept, report)?;
        kept.push(b'\n');
    }
    write_atomic(&metrics, &kept)?;
    let mut log = JsonlWriter::append(&metrics)?;
    let reports = sim.run(|sim, report| {
        log.write(report)?;
        on_report(sim, report)?;
        if report.round > 0 {
            sim.save_checkpoint(&checkpoint)?;
        }
        Ok(())
    })?;
    previous.extend(reports);
    Ok(previous)
}

/// A resumed run must use the settings it started with, up to what `same_but_rounds` copies.
fn check_same_settings<C: DeserializeOwned + PartialEq>(
    path: &Path,
    settings: &C,
    same_but_rounds: impl Fn(C) -> C,
) -> Result<()> {
    let Ok(text) = std::fs::read(path) else {
        return Ok(());
    };
    let saved: C = serde_json::from_slice(&text)?;
    if &same_but_rounds(saved) != settings {
        return Err(FedError::config(
            "resume",
            format!(
                "{} was written with other settings; resume with the same ones or another --out",
                path.display()
            ),
        ));
    }
    Ok(())
}

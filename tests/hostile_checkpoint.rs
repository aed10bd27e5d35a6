//! Hostile bytes in checkpoints and a node's state folder: seeded mutations of the manifests
//! (`checkpoint.json`, `client_state.json`) and of the files they name never panic, and every
//! error names the file.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use common::mutate::{Report, random_set, truncations};
use fedvlm::federated::checkpoint::Checkpoint;
use fedvlm::federated::{ClientStateDir, ShareSpec};
use fedvlm::strategy::{FedAdam, ServerOptConfig};
use fedvlm::synthetic::Quickstart;
use fedvlm::{Sharing, Simulation};

type B = Autodiff<Flex>;

/// A one-round checkpoint of the quick start under FedAdam, in `dir`.
fn checkpoint(dir: &Path) {
    let mut quickstart = Quickstart::new(2);
    quickstart.simulation.rounds = 1;
    quickstart.simulation.local_epochs = 1;
    quickstart.simulation.progress = false;
    let device = Default::default();
    let mut sim = Simulation::new(
        quickstart.simulation.clone(),
        ShareSpec::new(Sharing::PLora),
        quickstart.task::<B>(&device).unwrap(),
        FedAdam::new(ServerOptConfig::fedadam()),
        quickstart.models::<B>(&device).unwrap(),
    )
    .unwrap();
    sim.run_one_round().unwrap();
    sim.save_checkpoint(dir).unwrap();
}

/// Mutates `file` inside `dir` with every case, loading with `load` each time.
fn mutate_file<T, E: std::fmt::Display>(
    report: &mut Report,
    dir: &Path,
    file: &str,
    seed: u64,
    load: impl Fn() -> Result<T, E>,
) {
    let path = dir.join(file);
    let original = std::fs::read(&path).unwrap();
    let mut cases = truncations(original.len(), 64, 64);
    cases.extend(random_set(seed, original.len(), &[0, 1, 2], 300));
    let name = path.display().to_string();
    for mutation in &cases {
        std::fs::write(&path, mutation.apply(&original)).unwrap();
        report.run(mutation, Some(&name), &load);
    }
    std::fs::write(&path, &original).unwrap();
}

#[test]
fn mutated_checkpoints_are_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("checkpoint");
    checkpoint(&dir);
    let mut report = Report::new("Checkpoint::load", 21);
    for (i, file) in ["checkpoint.json", "strategy.json", "global.safetensors"]
        .into_iter()
        .enumerate()
    {
        // Only the manifest is named by the error for files whose sha256 it checks: a mutated
        // data file is refused for its checksum, naming that file.
        mutate_file(&mut report, &dir, file, 21 + i as u64, || {
            Checkpoint::load(&dir)
        });
    }
    report.finish();
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 1);
}

#[test]
fn mutated_node_state_folders_are_typed_errors() {
    let root = tempfile::tempdir().unwrap();
    let quickstart = Quickstart::new(2);
    let model = quickstart.model::<B>(0, &Default::default()).unwrap();
    let state = fedvlm::federated::collect_client_state(&model, &ShareSpec::new(Sharing::PLora));
    let dir = ClientStateDir::new(root.path(), 0, Sharing::PLora);
    dir.save(&state, 3, Some(3)).unwrap();
    let mut report = Report::new("ClientStateDir::load", 33);
    for (i, file) in ["client_state.json", "client_state.safetensors"]
        .into_iter()
        .enumerate()
    {
        mutate_file(&mut report, root.path(), file, 33 + i as u64, || dir.load());
    }
    report.finish();
    assert_eq!(dir.load().unwrap().unwrap().last_round, 3);
}

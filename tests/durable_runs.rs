//! Durable runs: checkpoints hold the strategy's state and the clients' kept optimisers (a
//! resumed FedAdam run equals an uninterrupted one, bit for bit), they are written atomically beside the previous one (a torn
//! or damaged checkpoint falls back to the previous), and a run killed with SIGKILL at random
//! moments (six of them forced into exact phases: training, aggregation, a checkpoint half
//! written, a checkpoint before its renames) and resumed each time ends with the uninterrupted run's metrics (FedAdam under pLoRA,
//! FedAvg under FedAvg-LoRA, and the two other pairings).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use fedvlm::federated::checkpoint::Checkpoint;
use fedvlm::federated::{
    JsonlWriter, OptimizerConfig, RoundReport, RunPhase, ShareSpec, run_in_dir, set_phase_observer,
};
use fedvlm::strategy::{FedAdam, ServerOptConfig, Strategy};
use fedvlm::synthetic::{Quickstart, SyntheticTask};
use fedvlm::{FedAvg, Sharing, Simulation};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

type B = Autodiff<Flex>;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const ROUNDS: u64 = 6;

fn quickstart(train_per_client: usize) -> Quickstart {
    let mut quickstart = Quickstart::new(3);
    quickstart.data.train_per_client = train_per_client;
    quickstart.simulation.rounds = ROUNDS;
    quickstart.simulation.local_epochs = 1;
    quickstart.simulation.progress = false;
    quickstart
}

fn simulation<S: Strategy>(
    quickstart: &Quickstart,
    sharing: Sharing,
    strategy: S,
) -> Simulation<B, SyntheticTask<B>, S> {
    let device = Default::default();
    Simulation::new(
        quickstart.simulation.clone(),
        ShareSpec::new(sharing),
        quickstart.task::<B>(&device).unwrap(),
        strategy,
        quickstart.models::<B>(&device).unwrap(),
    )
    .unwrap()
}

fn untimed(reports: &[RoundReport]) -> Vec<RoundReport> {
    reports.iter().map(RoundReport::without_timings).collect()
}

fn fedadam() -> FedAdam {
    FedAdam::new(ServerOptConfig::fedadam())
}

#[test]
fn resuming_restores_the_strategy_state_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let quickstart = quickstart(64);
    for sharing in [Sharing::PLora, Sharing::FedAvgLora] {
        let whole = untimed(
            &simulation(&quickstart, sharing, fedadam())
                .run(|_, _| Ok(()))
                .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let mut first = simulation(&quickstart, sharing, fedadam());
        let mut reports = Vec::new();
        reports.push(first.run_one_round().unwrap());
        reports.push(first.run_one_round().unwrap());
        first.save_checkpoint(dir.path()).unwrap();
        drop(first);
        let mut second = simulation(&quickstart, sharing, fedadam());
        second.resume(dir.path()).unwrap();
        while second.next_round() <= ROUNDS {
            reports.push(second.run_one_round().unwrap());
        }
        assert_eq!(untimed(&reports), whole[1..], "{sharing}");
    }
}

#[test]
fn resuming_restores_kept_client_optimisers_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let sgd = OptimizerConfig::Sgd {
        momentum: 0.9,
        weight_decay: 0.0,
    };
    for (sharing, optimizer) in [
        (Sharing::PLora, OptimizerConfig::default()),
        (Sharing::FedAvgLora, sgd),
    ] {
        let mut quickstart = quickstart(64);
        quickstart.simulation.keep_optimizer_state = true;
        quickstart.simulation.optimizer = optimizer;
        let whole = untimed(
            &simulation(&quickstart, sharing, fedadam())
                .run(|_, _| Ok(()))
                .unwrap(),
        );
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("checkpoint");
        let mut first = simulation(&quickstart, sharing, fedadam());
        let mut reports = vec![
            first.run_one_round().unwrap(),
            first.run_one_round().unwrap(),
        ];
        first.save_checkpoint(&dir).unwrap();
        drop(first);

        let saved = Checkpoint::load(&dir).unwrap();
        assert_eq!(saved.optimizers.len(), 3);
        let state = saved.optimizers[0].as_ref().expect("client 0 trained");
        let suffixes: &[&str] = match optimizer {
            OptimizerConfig::AdamW { .. } => &["#step", "#moment_1", "#moment_2"],
            OptimizerConfig::Sgd { .. } => &["#velocity"],
        };
        assert!(
            state
                .names()
                .all(|n| suffixes.iter().any(|s| n.ends_with(s)) && n.contains("lora_")),
            "{sharing}: {:?}",
            state.names().collect::<Vec<_>>()
        );
        assert!(!state.tensors.is_empty());

        let mut second = simulation(&quickstart, sharing, fedadam());
        second.resume(&dir).unwrap();
        while second.next_round() <= ROUNDS {
            reports.push(second.run_one_round().unwrap());
        }
        assert_eq!(untimed(&reports), whole[1..], "{sharing}");

        // The optimisers matter: the same checkpoint without them resumes to other metrics.
        let mut forgetful = saved.clone();
        forgetful.optimizers = vec![None; 3];
        let other = root.path().join("without");
        forgetful.save(&other).unwrap();
        let mut third = simulation(&quickstart, sharing, fedadam());
        third.resume(&other).unwrap();
        let mut rest = Vec::new();
        while third.next_round() <= ROUNDS {
            rest.push(third.run_one_round().unwrap());
        }
        assert_ne!(untimed(&rest), whole[3..], "{sharing}");

        // A state for another model is refused with a typed error, not a panic.
        let mut wrong = saved.clone();
        if let Some(Some(state)) = wrong.optimizers.first_mut() {
            let (name, tensor) = state
                .tensors
                .iter_mut()
                .find(|(n, _)| !n.ends_with("#step"))
                .unwrap();
            let name = name.clone();
            tensor.shape = vec![tensor.values.len()];
            let bad = root.path().join("wrong");
            wrong.save(&bad).unwrap();
            let mut fourth = simulation(&quickstart, sharing, fedadam());
            let error = fourth.resume(&bad).unwrap_err().to_string();
            assert!(error.contains(&name), "{error}");
        }
    }
}

#[test]
fn a_torn_or_damaged_checkpoint_falls_back_to_the_previous_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let quickstart = quickstart(32);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("checkpoint");
    let mut sim = simulation(&quickstart, Sharing::PLora, fedadam());
    sim.run_one_round().unwrap();
    sim.save_checkpoint(&dir).unwrap();
    sim.run_one_round().unwrap();
    sim.save_checkpoint(&dir).unwrap();
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 2);
    assert!(Checkpoint::load(&dir).unwrap().strategy.is_some());

    // A damaged file: its sha256 no longer matches; the previous checkpoint is used.
    let client = dir.join("client_1.safetensors");
    let bytes = std::fs::read(&client).unwrap();
    std::fs::write(&client, &bytes[..bytes.len() / 2]).unwrap();
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 1);
    std::fs::write(&client, &bytes).unwrap();
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 2);

    // Killed between the two renames: no current checkpoint, the previous one is complete.
    let aside = root.path().join("aside");
    std::fs::rename(&dir, &aside).unwrap();
    assert!(Checkpoint::exists(&dir));
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 1);
    std::fs::rename(&aside, &dir).unwrap();

    // Killed before the manifest: a temporary folder is left; the checkpoint is untouched and
    // the next save replaces the leftover.
    let leftover = root.path().join("checkpoint.tmp-1");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("global.safetensors"), b"torn").unwrap();
    assert_eq!(Checkpoint::load(&dir).unwrap().completed_rounds, 2);

    // Both unusable: a typed error, never a silent restart.
    std::fs::write(dir.join("checkpoint.json"), b"{").unwrap();
    std::fs::write(root.path().join("checkpoint.prev/checkpoint.json"), b"{").unwrap();
    assert!(Checkpoint::load(&dir).is_err());
}

/// Runs the federation into `dir` with resume, a checkpoint after every round: what the child
/// process does (`FEDVLM_DURABLE_CHILD=dir`), and the uninterrupted reference.
/// `variant` 0 is FedAdam under pLoRA, 1 FedAvg under FedAvg-LoRA, 2 FedAdam under
/// FedAvg-LoRA, 3 FedAvg under pLoRA.
fn run_into(dir: &Path, variant: u8) -> Vec<RoundReport> {
    let mut quickstart = quickstart(2048);
    quickstart.simulation.rounds = 16;
    let sharing = if variant.is_multiple_of(3) {
        Sharing::PLora
    } else {
        Sharing::FedAvgLora
    };
    if variant.is_multiple_of(2) {
        let mut sim = simulation(&quickstart, sharing, fedadam());
        run_in_dir(&mut sim, dir, &quickstart, true, |saved| saved).unwrap()
    } else {
        let mut sim = simulation(&quickstart, sharing, FedAvg::new());
        run_in_dir(&mut sim, dir, &quickstart, true, |saved| saved).unwrap()
    }
}

/// The child process's entry point: runs only when `FEDVLM_DURABLE_CHILD` names a folder (the
/// test below starts this test binary with it), and does nothing otherwise. With
/// `FEDVLM_DURABLE_STOP_AT` (a [`RunPhase`] label), the child writes the file
/// `FEDVLM_DURABLE_MARK` when it reaches that phase and waits there to be killed.
#[test]
fn child_process_entry_point() {
    if let Some(dir) = std::env::var_os("FEDVLM_DURABLE_CHILD") {
        let variant = std::env::var("FEDVLM_DURABLE_VARIANT").map_or(0, |v| v.parse().unwrap_or(0));
        if let (Ok(label), Some(mark)) = (
            std::env::var("FEDVLM_DURABLE_STOP_AT"),
            std::env::var_os("FEDVLM_DURABLE_MARK"),
        ) {
            set_phase_observer(move |phase: &RunPhase| {
                if phase.to_string() == label {
                    std::fs::write(&mark, label.as_bytes()).unwrap();
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            });
        }
        run_into(Path::new(&dir), variant);
    }
}

#[test]
fn a_run_killed_at_random_moments_resumes_to_the_same_metrics() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for variant in [0, 1, 2, 3] {
        killed_and_resumed(variant);
    }
}

/// The phases the child is stopped at and killed in, in the order they come: a client's
/// training, the server's aggregation, a checkpoint half written, a checkpoint complete in its
/// temporary folder before the renames, another file, and training again.
const KILL_PHASES: [&str; 6] = [
    "training:2:1",
    "aggregation:4",
    "checkpoint-file:6:client_1.safetensors",
    "checkpoint-rename:8",
    "checkpoint-file:10:global.safetensors",
    "training:12:0",
];

fn child(exe: &Path, dir: &Path, variant: u8) -> Command {
    let mut command = Command::new(exe);
    command
        .args(["--exact", "child_process_entry_point", "--nocapture"])
        .env("FEDVLM_DURABLE_CHILD", dir)
        .env("FEDVLM_DURABLE_VARIANT", variant.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command
}

/// Kills the child with SIGKILL when dropped (a failing assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn killed_and_resumed(variant: u8) {
    let root = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let reference = untimed(&run_into(&root.path().join("reference"), variant));
    let whole = started.elapsed().as_millis() as u64;
    let dir = root.path().join("killed");
    let exe = std::env::current_exe().unwrap();
    let mut kills = 0;

    // First, kills at exact phases: the child stops there and is killed with SIGKILL.
    for label in KILL_PHASES {
        let mark = root.path().join("reached");
        let _ = std::fs::remove_file(&mark);
        let mut running = Killed(
            child(&exe, &dir, variant)
                .env("FEDVLM_DURABLE_STOP_AT", label)
                .env("FEDVLM_DURABLE_MARK", &mark)
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while !mark.exists() {
            assert!(
                running.0.try_wait().unwrap().is_none(),
                "variant {variant}: the run ended before reaching {label}"
            );
            assert!(std::time::Instant::now() < deadline, "{label}: timed out");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(running); // SIGKILL at the phase
        kills += 1;
    }

    // Then kills at random moments, and a last run to the end.
    let mut rng = ChaCha8Rng::seed_from_u64(11 + u64::from(variant));
    for attempt in 0..40 {
        let mut running = Killed(child(&exe, &dir, variant).spawn().unwrap());
        // Up to about two rounds' worth, so that most attempts are killed after some progress.
        let delay = Duration::from_millis(rng.random_range(whole / 32 + 30..whole / 8 + 60));
        let deadline = std::time::Instant::now() + delay;
        let mut finished = None;
        while std::time::Instant::now() < deadline {
            if let Some(status) = running.0.try_wait().unwrap() {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        match finished {
            Some(status) => {
                assert!(status.success(), "attempt {attempt}: {status}");
                break;
            }
            None if kills < KILL_PHASES.len() + 4 => {
                drop(running); // SIGKILL
                kills += 1;
            }
            None => {
                let status = running.0.wait().unwrap();
                assert!(status.success(), "attempt {attempt}: {status}");
                break;
            }
        }
    }
    assert!(
        kills > KILL_PHASES.len(),
        "variant {variant}: only {kills} kills"
    );
    let resumed = JsonlWriter::read_all(dir.join("metrics.jsonl")).unwrap();
    assert_eq!(untimed(&resumed), reference, "variant {variant}");
}

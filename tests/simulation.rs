//! The simulation runner: federated invariants, reports, determinism, resume, and the paper's
//! claim in miniature.

use burn::backend::{Autodiff, Flex};
use fedvlm::federated::{
    JsonlWriter, RoundReport, ShareSpec, WireDtype, collect_shared, collect_where,
};
use fedvlm::synthetic::{SyntheticConfig, SyntheticModel, SyntheticTask};
use fedvlm::{
    FedAvg, FedError, FedProx, LoraConfig, Sharing, Simulation, SimulationConfig, Strategy,
};

type B = Autodiff<Flex>;

/// Dropout draws from burn's backend-wide RNG (seeded per client and round by the simulation),
/// so simulations in parallel test threads would interleave their draws: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn data(num_clients: usize) -> SyntheticConfig {
    SyntheticConfig {
        num_clients,
        train_per_client: 96,
        test_per_client: 48,
        ..SyntheticConfig::default()
    }
}

fn config(rounds: u64) -> SimulationConfig {
    SimulationConfig {
        rounds,
        local_epochs: 2,
        batch_size: 16,
        lr: 1e-2,
        progress: false,
        ..SimulationConfig::default()
    }
}

fn simulation<S: Strategy>(
    data: SyntheticConfig,
    config: SimulationConfig,
    sharing: Sharing,
    strategy: S,
) -> Simulation<B, SyntheticTask<B>, S> {
    let device = Default::default();
    let lora = LoraConfig::new(4, 8.0).with_dropout(0.1);
    let models = (0..data.num_clients)
        .map(|k| SyntheticModel::new(&data, &lora, 100 + k as u64, &device).unwrap())
        .collect();
    let task = SyntheticTask::new(data, &device).unwrap();
    Simulation::new(config, ShareSpec::new(sharing), task, strategy, models).unwrap()
}

fn adapter(sim: &Simulation<B, SyntheticTask<B>, FedAvg>, k: usize, name: &str) -> Vec<f32> {
    let model = sim.client_model(k).unwrap();
    let all = collect_where(model, |_, _| true);
    all.tensors[name].values.clone()
}

#[test]
fn after_a_round_participants_hold_the_global_b_and_keep_their_own_a() {
    let _serial = serial();
    let mut sim = simulation(
        data(3),
        SimulationConfig {
            fraction: 0.67,
            ..config(1)
        },
        Sharing::PLora,
        FedAvg::new(),
    );
    let initial_a: Vec<Vec<f32>> = (0..3).map(|k| adapter(&sim, k, "head.lora_a")).collect();
    let sampled = sim.sample_clients(1);
    assert_eq!(sampled.len(), 2);
    let out = (0..3).find(|k| !sampled.contains(k)).unwrap();
    let report = sim.run_one_round().unwrap();
    assert_eq!(report.sampled, sampled);

    let global = &sim.server().global().tensors["head.lora_b"].values;
    assert!(global.iter().any(|v| *v != 0.0), "B must have trained");
    for &k in &sampled {
        assert_eq!(
            &adapter(&sim, k, "head.lora_b"),
            global,
            "client {k} holds the global B"
        );
        assert_ne!(
            adapter(&sim, k, "head.lora_a"),
            initial_a[k],
            "client {k} trained its A"
        );
    }
    assert_ne!(
        adapter(&sim, sampled[0], "head.lora_a"),
        adapter(&sim, sampled[1], "head.lora_a")
    );
    // The client that sat out keeps its own A (and its untouched B).
    assert_eq!(adapter(&sim, out, "head.lora_a"), initial_a[out]);
    assert!(adapter(&sim, out, "head.lora_b").iter().all(|v| *v == 0.0));
    assert!(!report.clients[out].participated);
    assert_eq!(report.clients[out].bytes_up, 0);
}

#[test]
fn fedavg_lora_synchronises_a_and_fedsa_keeps_b() {
    let _serial = serial();
    let mut sim = simulation(data(2), config(1), Sharing::FedAvgLora, FedAvg::new());
    sim.run_one_round().unwrap();
    assert_eq!(
        adapter(&sim, 0, "head.lora_a"),
        adapter(&sim, 1, "head.lora_a")
    );
    assert_eq!(
        adapter(&sim, 0, "head.lora_b"),
        adapter(&sim, 1, "head.lora_b")
    );

    let mut sim = simulation(data(2), config(1), Sharing::FedSaLora, FedAvg::new());
    sim.run_one_round().unwrap();
    assert_eq!(
        adapter(&sim, 0, "head.lora_a"),
        adapter(&sim, 1, "head.lora_a")
    );
    assert_ne!(
        adapter(&sim, 0, "head.lora_b"),
        adapter(&sim, 1, "head.lora_b")
    );
}

#[test]
fn recorded_bytes_equal_serialised_sizes() {
    let _serial = serial();
    for dtype in [WireDtype::F32, WireDtype::F16] {
        let mut sim = simulation(
            data(2),
            SimulationConfig {
                wire_dtype: dtype,
                ..config(2)
            },
            Sharing::PLora,
            FedAvg::new(),
        );
        let spec = ShareSpec::new(Sharing::PLora);
        let reports = sim.run(|_, _| Ok(())).unwrap();
        // Round 1: download of the initial state + broadcast back; round 2: broadcast only.
        let size = collect_shared(sim.client_model(0).unwrap(), &spec)
            .to_bytes(dtype)
            .unwrap()
            .len();
        let mut global = sim.server().global().clone();
        let down = global.to_bytes(dtype).unwrap().len();
        global.round = 0;
        let first_down = global.to_bytes(dtype).unwrap().len();
        let r1 = &reports[1].clients[0];
        let r2 = &reports[2].clients[0];
        assert!(size > 0 && r1.bytes_up > 0);
        assert_eq!(r2.bytes_up, size, "{dtype:?}");
        assert_eq!(r1.bytes_down, first_down + down, "{dtype:?}");
        assert_eq!(r2.bytes_down, down, "{dtype:?}");
    }
}

#[test]
fn same_seed_gives_identical_reports() {
    let _serial = serial();
    let run = || {
        let mut sim = simulation(
            data(3),
            SimulationConfig {
                fraction: 0.67,
                ..config(2)
            },
            Sharing::PLora,
            FedAvg::new(),
        );
        let reports = sim.run(|_, _| Ok(())).unwrap();
        reports
            .iter()
            .map(RoundReport::without_timings)
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 3);
    assert_eq!(a, b);
    let mut sim = simulation(
        data(3),
        SimulationConfig {
            fraction: 0.67,
            seed: 7,
            ..config(2)
        },
        Sharing::PLora,
        FedAvg::new(),
    );
    let other: Vec<_> = sim
        .run(|_, _| Ok(()))
        .unwrap()
        .iter()
        .map(RoundReport::without_timings)
        .collect();
    assert_ne!(a, other);
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulationConfig {
        fraction: 0.67,
        ..config(3)
    };
    let mut full = simulation(data(3), cfg.clone(), Sharing::PLora, FedAvg::new());
    let expected: Vec<_> = full
        .run(|_, _| Ok(()))
        .unwrap()
        .iter()
        .map(RoundReport::without_timings)
        .collect();

    let mut first = simulation(
        data(3),
        SimulationConfig {
            rounds: 1,
            ..cfg.clone()
        },
        Sharing::PLora,
        FedAvg::new(),
    );
    let path = dir.path().join("metrics.jsonl");
    let mut log = JsonlWriter::create(&path).unwrap();
    first.run(|_, r| log.write(r)).unwrap();
    first.save_checkpoint(dir.path().join("ckpt")).unwrap();

    let mut resumed = simulation(data(3), cfg, Sharing::PLora, FedAvg::new());
    resumed.resume(dir.path().join("ckpt")).unwrap();
    assert_eq!(resumed.next_round(), 2);
    let mut log = JsonlWriter::append(&path).unwrap();
    resumed.run(|_, r| log.write(r)).unwrap();
    drop(log);
    let got: Vec<_> = JsonlWriter::read_all(&path)
        .unwrap()
        .iter()
        .map(RoundReport::without_timings)
        .collect();
    assert_eq!(got, expected);

    // A checkpoint from another rule is refused.
    let mut other = simulation(data(3), config(3), Sharing::FedAvgLora, FedAvg::new());
    assert!(matches!(
        other.resume(dir.path().join("ckpt")),
        Err(FedError::InvalidConfig { .. })
    ));
}

#[test]
fn plora_beats_fedavg_lora_on_conflicting_clients() {
    let _serial = serial();
    let run = |sharing| {
        let mut sim = simulation(data(4), config(4), sharing, FedAvg::new());
        let reports = sim.run(|_, _| Ok(())).unwrap();
        reports.last().unwrap().mean_test.unwrap().accuracy
    };
    let plora = run(Sharing::PLora);
    let fedavg = run(Sharing::FedAvgLora);
    assert!(
        plora > fedavg + 0.2,
        "pLoRA {plora:.3} vs FedAvg-LoRA {fedavg:.3}"
    );
    assert!(plora > 0.8, "pLoRA {plora:.3}");
}

#[test]
fn fedprox_runs_and_reports_finite_losses() {
    let _serial = serial();
    let mut sim = simulation(data(2), config(2), Sharing::PLora, FedProx::new(0.01));
    let reports = sim.run(|_, _| Ok(())).unwrap();
    assert_eq!(reports.last().unwrap().strategy, "fedprox(mu=0.01)");
    for client in &reports.last().unwrap().clients {
        assert!(client.train_loss.unwrap().is_finite());
        assert!(client.test.unwrap().accuracy > 0.0);
    }
}

/// Every tensor of every client after `config`'s rounds of FedProx (mu 1) with plain SGD and no
/// dropout, so that the run is a function of the gradients alone.
fn fedprox_weights(config: SimulationConfig) -> Vec<Vec<f32>> {
    let device = Default::default();
    let d = data(2);
    let lora = LoraConfig::new(4, 8.0);
    let models = (0..2)
        .map(|k| SyntheticModel::new(&d, &lora, 100 + k, &device).unwrap())
        .collect();
    let task = SyntheticTask::<B>::new(d, &device).unwrap();
    let config = SimulationConfig {
        optimizer: fedvlm::federated::OptimizerConfig::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        lr: 0.1,
        ..config
    };
    let spec = ShareSpec::new(Sharing::PLora);
    let mut sim = Simulation::new(config, spec, task, FedProx::new(1.0), models).unwrap();
    sim.run(|_, _| Ok(())).unwrap();
    (0..2)
        .map(|k| {
            let all = collect_where(sim.client_model(k).unwrap(), |_, _| true);
            all.tensors
                .values()
                .flat_map(|t| t.values.clone())
                .collect()
        })
        .collect()
}

#[test]
fn micro_batches_under_fedprox_take_the_whole_batch_s_step() {
    let _serial = serial();
    let whole = fedprox_weights(config(2));
    for micro in [5, 8] {
        let split = fedprox_weights(SimulationConfig {
            micro_batch_size: Some(micro),
            ..config(2)
        });
        for (a, b) in whole.iter().zip(&split) {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            // The proximal term is added once per step, not once per micro-batch.
            assert!(diff < 1e-5, "micro {micro}: {diff}");
        }
    }
}

#[test]
fn bad_settings_are_refused() {
    let _serial = serial();
    let device = Default::default();
    let d = data(2);
    let lora = LoraConfig::new(4, 8.0);
    let models = || -> Vec<SyntheticModel<B>> {
        (0..2)
            .map(|k| SyntheticModel::new(&d, &lora, k, &device).unwrap())
            .collect()
    };
    let task = || SyntheticTask::<B>::new(d, &device).unwrap();
    let spec = ShareSpec::new(Sharing::PLora);
    for bad in [
        SimulationConfig {
            fraction: 0.0,
            ..config(1)
        },
        SimulationConfig {
            local_epochs: 0,
            ..config(1)
        },
        SimulationConfig {
            lr: -1.0,
            ..config(1)
        },
    ] {
        let err = Simulation::new(bad, spec.clone(), task(), FedAvg::new(), models())
            .err()
            .unwrap();
        assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
    }
    let mut one = models();
    one.pop();
    assert!(Simulation::new(config(1), spec, task(), FedAvg::new(), one).is_err());
}

#[test]
fn ffa_lora_clients_share_one_frozen_a_that_never_changes() {
    let _serial = serial();
    let mut sim = simulation(data(3), config(2), Sharing::FfaLora, FedAvg::new());
    let common = adapter(&sim, 0, "head.lora_a");
    // Models were built with distinct adapter seeds; the simulation gives them client 0's A.
    for k in 0..3 {
        assert_eq!(adapter(&sim, k, "head.lora_a"), common, "client {k} before");
    }
    sim.run(|_, _| Ok(())).unwrap();
    for k in 0..3 {
        assert_eq!(adapter(&sim, k, "head.lora_a"), common, "client {k} after");
    }
    // ...while B trained and travels.
    assert_ne!(adapter(&sim, 1, "head.lora_b"), vec![0.0; 16]);
    // pLoRA keeps distinct private A's.
    let plora = simulation(data(3), config(1), Sharing::PLora, FedAvg::new());
    let a: Vec<Vec<f32>> = (0..3).map(|k| adapter(&plora, k, "head.lora_a")).collect();
    assert_ne!(a[0], a[1]);
}

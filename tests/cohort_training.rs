//! Cohort-batched local training equals sequential training (within 1e-5) on the CIFAR-10
//! cached task, for every sharing rule, with FedAvg and FedProx, with dropout, uneven client
//! sizes and short last batches. Cohort rounds report every member's training phase, and
//! clients that keep their optimisers across rounds train one after the other.

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use fedvlm::data::{Cifar10, Cifar10Split};
use fedvlm::experiments::cifar10::{
    CPU_COHORT_SIZE, Cifar10Config, ClientSplit, CohortKernel, RunInputs, StrategyKind,
    build_cache, federation, load_backbone,
};
use fedvlm::federated::cohort::{CohortSchedule, DropoutStream};
use fedvlm::federated::{
    ClientConfig, CohortMode, FederatedTask, OptimizerConfig, RoundReport, RunPhase,
    set_phase_observer,
};
use fedvlm::{Sharing, Simulation};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

type B = Autodiff<Flex>;

/// Dropout draws from burn's backend-wide generator: one simulation at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Images whose mean colour depends on the label, plus noise.
fn images(n: usize, seed: u64) -> Cifar10Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 3072);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 10) as u8;
        labels.push(label);
        for c in 0..3 {
            let base = 20 + 20 * ((label as usize + 3 * c) % 10);
            for _ in 0..1024 {
                images.push((base + rng.random_range(0..40)) as u8);
            }
        }
    }
    Cifar10Split { images, labels }
}

/// Five clients with 37, 8, 50, 3 and 21 training images (batch 8: short last batches, 1 to 7
/// steps an epoch), drawn from 120 images.
fn uneven_split() -> ClientSplit {
    let sizes = [37, 8, 50, 3, 21];
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let train: Vec<Vec<usize>> = sizes
        .iter()
        .map(|&n| (0..n).map(|_| rng.random_range(0..120usize)).collect())
        .collect();
    let test: Vec<Vec<usize>> = (0..sizes.len()).map(|k| vec![k, k + 5, k + 10]).collect();
    ClientSplit {
        classes: vec![(0..10).collect(); sizes.len()],
        train,
        test,
        global_test: (0..20).collect(),
    }
}

fn config(strategy: StrategyKind) -> Cifar10Config {
    Cifar10Config {
        width_mult: 0.25,
        clients: 5,
        shards: 10,
        rounds: 2,
        local_epochs: 2,
        batch_size: 8,
        image_size: 32,
        lr: 0.02,
        strategy,
        mu: 0.5,
        global_eval_every: 0,
        ..Cifar10Config::default()
    }
}

struct Run {
    reports: Vec<RoundReport>,
    /// Every client's state (shared and private adapter tensors, head).
    states: Vec<Vec<(String, Vec<f32>)>>,
    /// The clients whose training started, in order, per round (from the phase observer).
    trained: Vec<Vec<usize>>,
    /// Whether each client holds an optimiser after the run.
    kept: Vec<bool>,
}

/// The training phases seen by this process's phase observer.
static PHASES: std::sync::Mutex<Vec<(u64, usize)>> = std::sync::Mutex::new(Vec::new());

fn observe_phases() {
    // One observer per process: the first test to get here installs it.
    let _ = set_phase_observer(|phase| {
        if let RunPhase::Training { round, client } = phase {
            PHASES
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((*round, *client));
        }
    });
}

fn run(config: &Cifar10Config, sharing: Sharing, optimizer: OptimizerConfig) -> Run {
    run_with(config, sharing, optimizer, false, CohortKernel::Auto)
}

fn run_keeping(
    config: &Cifar10Config,
    sharing: Sharing,
    optimizer: OptimizerConfig,
    keep_optimizer_state: bool,
) -> Run {
    run_with(
        config,
        sharing,
        optimizer,
        keep_optimizer_state,
        CohortKernel::Auto,
    )
}

fn run_with(
    config: &Cifar10Config,
    sharing: Sharing,
    optimizer: OptimizerConfig,
    keep_optimizer_state: bool,
    kernel: CohortKernel,
) -> Run {
    observe_phases();
    PHASES.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let device = Default::default();
    let data = Arc::new(Cifar10::from_splits(images(120, 1), images(20, 2)).unwrap());
    let backbone = load_backbone::<B>(config, None, &device).unwrap();
    let cache = Arc::new(build_cache(config, &data, &backbone, false, &device).unwrap());
    let split = uneven_split();
    let inputs = RunInputs {
        config,
        data,
        split: &split,
        backbone: &backbone,
        cache: Some(cache),
        out_dir: None,
        resume: false,
        progress: false,
        device,
    };
    let mut federation = federation(&inputs, sharing).unwrap();
    federation.config.optimizer = optimizer;
    federation.config.keep_optimizer_state = keep_optimizer_state;
    federation.task.set_cohort_kernel(kernel);
    let strategy = config.build_strategy(federation.privacy_delta()).unwrap();
    let mut sim = Simulation::new(
        federation.config,
        federation.spec,
        federation.task,
        strategy,
        federation.models,
    )
    .unwrap();
    let reports = sim.run(|_, _| Ok(())).unwrap();
    let states = (0..config.clients)
        .map(|k| {
            let state = sim.client(k).unwrap().state();
            state
                .tensors
                .into_iter()
                .map(|(name, t)| (name, t.values))
                .collect()
        })
        .collect();
    let kept = (0..config.clients)
        .map(|k| sim.client(k).unwrap().optimizer_state().unwrap().is_some())
        .collect();
    let phases = std::mem::take(&mut *PHASES.lock().unwrap_or_else(|p| p.into_inner()));
    let trained = (1..=config.rounds)
        .map(|r| {
            phases
                .iter()
                .filter(|(round, _)| *round == r)
                .map(|&(_, k)| k)
                .collect()
        })
        .collect();
    Run {
        reports,
        states,
        trained,
        kept,
    }
}

fn assert_close(a: &Run, b: &Run, what: &str) {
    if std::env::var("COHORT_DEBUG").is_ok() {
        for (k, (sa, sb)) in a.states.iter().zip(&b.states).enumerate() {
            for ((na, va), (_, vb)) in sa.iter().zip(sb) {
                let (mut d, mut m) = (0.0f32, 0.0f32);
                for (x, y) in va.iter().zip(vb) {
                    d = d.max((x - y).abs());
                    m = m.max(x.abs());
                }
                eprintln!("{what} client {k} {na}: max diff {d:e} (max |x| {m:e})");
            }
        }
    }
    for (k, (sa, sb)) in a.states.iter().zip(&b.states).enumerate() {
        assert_eq!(sa.len(), sb.len());
        for ((na, va), (nb, vb)) in sa.iter().zip(sb) {
            assert_eq!(na, nb);
            for (x, y) in va.iter().zip(vb) {
                assert!(
                    (x - y).abs() <= 1e-5,
                    "{what}: client {k} `{na}`: {x} vs {y}"
                );
            }
        }
    }
    for (ra, rb) in a.reports.iter().zip(&b.reports) {
        for (ca, cb) in ra.clients.iter().zip(&rb.clients) {
            assert_eq!(ca.participated, cb.participated);
            assert_eq!(ca.train_examples, cb.train_examples);
            if let (Some(la), Some(lb)) = (ca.train_loss, cb.train_loss) {
                assert!((la - lb).abs() <= 1e-5, "{what}: loss {la} vs {lb}");
            }
            let (ta, tb) = (ca.test.unwrap(), cb.test.unwrap());
            assert!((ta.loss - tb.loss).abs() <= 1e-5, "{what}: test loss");
        }
    }
    // Training moved the tensors well beyond the tolerance (the comparison is not vacuous).
    let first = &a.reports[0].clients[0].test.unwrap().loss;
    let last = &a.reports.last().unwrap().clients[0].test.unwrap().loss;
    assert!((first - last).abs() > 1e-3, "{what}: {first} vs {last}");
}

/// Runs every sharing rule sequentially and in cohorts of each of `sizes`, trained by the
/// default kernel (on this CPU backend: the host kernel).
fn compare(strategy: StrategyKind, lr: f64, optimizer: OptimizerConfig, sizes: &[CohortMode]) {
    compare_with(strategy, lr, optimizer, sizes, CohortKernel::Auto);
}

fn compare_with(
    strategy: StrategyKind,
    lr: f64,
    optimizer: OptimizerConfig,
    sizes: &[CohortMode],
    kernel: CohortKernel,
) {
    let _serial = serial();
    for sharing in Sharing::ALL {
        let sequential = run(
            &Cifar10Config {
                cohort: CohortMode::Off,
                lr,
                ..config(strategy)
            },
            sharing,
            optimizer,
        );
        for &cohort in sizes {
            let batched = run_with(
                &Cifar10Config {
                    cohort,
                    lr,
                    ..config(strategy)
                },
                sharing,
                optimizer,
                false,
                kernel,
            );
            assert_close(
                &sequential,
                &batched,
                &format!("{sharing} {strategy:?} {cohort:?} {kernel:?}"),
            );
        }
    }
}

#[test]
fn cohorts_equal_sequential_training_under_fedavg_for_every_rule() {
    compare(
        StrategyKind::FedAvg,
        0.02,
        OptimizerConfig::default(),
        &[CohortMode::Auto, CohortMode::Size(2)],
    );
}

#[test]
fn cohorts_equal_sequential_training_under_fedprox_for_every_rule() {
    // Batched products sum in another order than burn's 2-D ones, so a hidden unit sitting just
    // above Hardswish's knee at -3 (where `h + 3` cancels) can get a gradient near Adam's
    // epsilon from one and a slightly different one from the other; `m / (sqrt(v) + eps)` then
    // magnifies the rounding (with eps 1e-8 and FedProx's pull, one element in thousands ends
    // 1e-5 to 2e-5 apart after two rounds). eps 1e-6 keeps every step out of that regime while
    // testing the same formula.
    let adam = OptimizerConfig::AdamW {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-6,
        weight_decay: 0.01,
    };
    compare(StrategyKind::FedProx, 0.02, adam, &[CohortMode::Auto]);
}

#[test]
fn cohorts_equal_sequential_training_with_sgd_momentum_and_weight_decay() {
    compare(
        StrategyKind::FedProx,
        0.02,
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.01,
        },
        &[CohortMode::Size(3)],
    );
}

#[test]
fn the_stacked_tensor_path_equals_sequential_training_too() {
    // The path a GPU takes, forced on the CPU: FedAvg with AdamW, FedProx with SGD.
    compare_with(
        StrategyKind::FedAvg,
        0.02,
        OptimizerConfig::default(),
        &[CohortMode::Size(2)],
        CohortKernel::Tensor,
    );
    compare_with(
        StrategyKind::FedProx,
        0.02,
        OptimizerConfig::Sgd {
            momentum: 0.9,
            weight_decay: 0.01,
        },
        &[CohortMode::Auto],
        CohortKernel::Tensor,
    );
}

#[test]
fn dropout_streams_equal_the_flex_generator_s_draws() {
    let _serial = serial();
    let device = Default::default();
    <Flex as Backend>::seed(&device, 99);
    let draw = |dims: [usize; 2]| -> Vec<f32> {
        Tensor::<Flex, 2>::random(dims, burn::tensor::Distribution::Bernoulli(0.8), &device)
            .into_data()
            .into_vec()
            .unwrap()
    };
    let (first, second) = (draw([3, 7]), draw([2, 5]));
    let mut stream = DropoutStream::new(99);
    let (mut a, mut b) = (vec![0.0; 21], vec![0.0; 10]);
    stream.fill(&mut a, 0.2);
    stream.fill(&mut b, 0.2);
    let scale = (1.0 / 0.8f64) as f32;
    let expect = |v: &[f32]| v.iter().map(|&x| x * scale).collect::<Vec<f32>>();
    assert_eq!(a, expect(&first));
    assert_eq!(b, expect(&second));
    assert!(a.contains(&0.0) && a.contains(&scale));
}

#[test]
fn cohort_mode_parses_the_flag_and_bounds_the_size() {
    assert_eq!(CohortMode::parse("auto").unwrap(), CohortMode::Auto);
    assert_eq!(CohortMode::parse("off").unwrap(), CohortMode::Off);
    assert_eq!(CohortMode::parse("12").unwrap(), CohortMode::Size(12));
    assert!(CohortMode::parse("many").is_err());
    assert_eq!(CohortMode::Auto.size(40, 1000), Some(40));
    assert_eq!(CohortMode::Auto.size(40, 7), Some(7));
    assert_eq!(CohortMode::Size(5).size(3, 1000), Some(3));
    assert_eq!(CohortMode::Off.size(40, 1000), None);
    let config = ClientConfig {
        local_epochs: 1,
        batch_size: 2,
        micro_batch_size: None,
        eval_batch_size: 2,
        lr: 0.1,
        optimizer: OptimizerConfig::default(),
        keep_optimizer_state: false,
        seed: 0,
    };
    let schedule = CohortSchedule::new(&[(0, 1), (1, 5)], &config, 1);
    assert_eq!(schedule.order, vec![1, 0]);
    assert_eq!(schedule.active(1), 1);
}

#[test]
fn cohort_rounds_report_every_member_s_training_phase_in_cohort_order() {
    let _serial = serial();
    let optimizer = OptimizerConfig::default();
    let off = Cifar10Config {
        cohort: CohortMode::Off,
        ..config(StrategyKind::FedAvg)
    };
    let sequential = run(&off, Sharing::PLora, optimizer);
    assert_eq!(sequential.trained, vec![vec![0, 1, 2, 3, 4]; 2]);
    // Cohorts train their members largest first (50, 37, 21, 8 and 3 images): the order of
    // the phases shows that the batched code trained them, and every member is reported.
    for cohort in [CohortMode::Auto, CohortMode::Size(2)] {
        let batched = run(
            &Cifar10Config {
                cohort,
                ..off.clone()
            },
            Sharing::PLora,
            optimizer,
        );
        assert_eq!(batched.trained, vec![vec![2, 0, 4, 1, 3]; 2], "{cohort:?}");
        assert_close(&sequential, &batched, &format!("{cohort:?}"));
    }
}

#[test]
fn kept_optimisers_make_cohort_mode_train_sequentially() {
    let _serial = serial();
    let optimizer = OptimizerConfig::default();
    let off = Cifar10Config {
        cohort: CohortMode::Off,
        ..config(StrategyKind::FedAvg)
    };
    for sharing in [Sharing::PLora, Sharing::FedSaLora] {
        let sequential = run_keeping(&off, sharing, optimizer, true);
        let auto = run_keeping(
            &Cifar10Config {
                cohort: CohortMode::Auto,
                ..off.clone()
            },
            sharing,
            optimizer,
            true,
        );
        // The same code ran: the same order, bit for bit the same tensors, and every client
        // still holds its optimiser for the next round (and the next checkpoint).
        assert_eq!(auto.trained, vec![vec![0, 1, 2, 3, 4]; 2]);
        assert_eq!(auto.states, sequential.states, "{sharing}");
        assert_eq!(auto.kept, vec![true; 5]);
        assert_eq!(sequential.kept, vec![true; 5]);
        // Without kept optimisers nobody holds one after a round.
        let fresh = run(&off, sharing, optimizer);
        assert_eq!(fresh.kept, vec![false; 5]);
    }
}

#[test]
fn the_automatic_cohort_size_is_bounded_by_memory() {
    let device = Default::default();
    let config = config(StrategyKind::FedAvg);
    let data = Arc::new(Cifar10::from_splits(images(120, 1), images(20, 2)).unwrap());
    let backbone = load_backbone::<B>(&config, None, &device).unwrap();
    let cache = Arc::new(build_cache(&config, &data, &backbone, false, &device).unwrap());
    let split = uneven_split();
    let inputs = RunInputs {
        config: &config,
        data,
        split: &split,
        backbone: &backbone,
        cache: Some(cache),
        out_dir: None,
        resume: false,
        progress: false,
        device,
    };
    let mut federation = federation(&inputs, Sharing::PLora).unwrap();
    let mut client = federation.config.client_config();
    for kernel in [CohortKernel::Auto, CohortKernel::Host, CohortKernel::Tensor] {
        federation.task.set_cohort_kernel(kernel);
        let trainer = federation
            .task
            .cohort()
            .expect("the cached task trains in cohorts");
        client.batch_size = 32;
        let paper = trainer.max_cohort_size(&client);
        // The paper's 40 clients fit in memory many times over. Host members train
        // independently, so a cohort holds the whole round; the stacked tensor path on the CPU
        // stays at the cache-friendly size.
        if kernel == CohortKernel::Tensor {
            assert_eq!(paper, CPU_COHORT_SIZE);
        } else {
            assert!(paper >= 160, "{kernel:?}: {paper}");
        }
        // A batch of 16 M images leaves room for one client.
        client.batch_size = 1 << 24;
        let large = trainer.max_cohort_size(&client);
        assert_eq!(large, 1, "{kernel:?}");
        assert_eq!(CohortMode::Auto.size(40, large), Some(large.min(40)));
    }
}

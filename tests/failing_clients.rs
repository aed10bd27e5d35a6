//! A federation survives failing clients: a client whose training fails or that fault injection
//! drops is reported and left out of the round; `accept_failures` and `min_fit_clients` behave as
//! in Flower; example counts that overflow are refused; a model left trainable outside the
//! adapters is refused up front.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::prelude::*;
use fedvlm::federated::{
    ClientUpdate, EvalBatch, FailurePolicy, FederatedTask, Payload, Server, ShareSpec, Split,
    TensorValues, collect_where,
};
use fedvlm::lora::set_trainable;
use fedvlm::synthetic::{Quickstart, SyntheticModel, SyntheticTask};
use fedvlm::{FedAvg, FedError, Sharing, Simulation, SimulationConfig};

type B = Autodiff<Flex>;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The quick start's task, whose client `fail_client` fails to train while `fail` is set.
struct Flaky {
    inner: SyntheticTask<B>,
    fail_client: usize,
    fail: std::sync::atomic::AtomicBool,
}

impl FederatedTask<B> for Flaky {
    type Model = SyntheticModel<B>;
    fn num_clients(&self) -> usize {
        self.inner.num_clients()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn num_examples(&self, client: usize, split: Split) -> usize {
        self.inner.num_examples(client, split)
    }
    fn device(&self) -> burn::tensor::Device<B> {
        self.inner.device()
    }
    fn loss(
        &self,
        model: &Self::Model,
        client: usize,
        batch: &[usize],
    ) -> fedvlm::Result<Tensor<B, 1>> {
        if client == self.fail_client && self.fail.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(FedError::Task(format!("client {client}: disk full")));
        }
        self.inner.loss(model, client, batch)
    }
    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> fedvlm::Result<EvalBatch> {
        self.inner.evaluate(model, client, split, batch)
    }
}

fn config(rounds: u64) -> SimulationConfig {
    SimulationConfig {
        rounds,
        local_epochs: 1,
        batch_size: 32,
        lr: 1e-2,
        progress: false,
        ..SimulationConfig::default()
    }
}

fn flaky(config: SimulationConfig, fail_client: usize) -> Simulation<B, Flaky, FedAvg> {
    let quickstart = Quickstart::new(3);
    let device = Default::default();
    let task = Flaky {
        inner: quickstart.task(&device).unwrap(),
        fail_client,
        fail: false.into(),
    };
    let models = quickstart.models::<B>(&device).unwrap();
    Simulation::new(
        config,
        ShareSpec::new(Sharing::PLora),
        task,
        FedAvg::new(),
        models,
    )
    .unwrap()
}

fn client_state(sim: &Simulation<B, Flaky, FedAvg>, k: usize) -> Payload {
    collect_where(sim.client_model(k).unwrap(), |_, _| true)
}

#[test]
fn a_failing_client_is_reported_and_left_out() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut sim = flaky(config(2), 1);
    sim.run_one_round().unwrap();
    let before = client_state(&sim, 1);
    let global_before = sim.server().global().clone();
    sim.task()
        .fail
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let report = sim.run_one_round().unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].client, 1);
    assert!(report.failed[0].reason.contains("disk full"));
    assert!(report.aggregated);
    assert!(!report.clients[1].participated);
    assert_ne!(
        sim.server().global(),
        &global_before,
        "the others were aggregated"
    );
    // The failed client's model is as it was (it did not receive the new global either).
    assert_eq!(client_state(&sim, 1), before);

    // With accept_failures off, the same failure leaves the global state unchanged.
    let mut strict = flaky(
        SimulationConfig {
            failures: FailurePolicy {
                accept_failures: false,
                ..FailurePolicy::default()
            },
            ..config(1)
        },
        0,
    );
    strict
        .task()
        .fail
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let initial = strict.server().global().clone();
    let report = strict.run_one_round().unwrap();
    assert!(!report.aggregated);
    assert_eq!(strict.server().global(), &initial);
}

#[test]
fn min_fit_clients_and_fault_injection_behave_as_in_flower() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // More clients required than exist: never aggregated.
    let mut sim = flaky(
        SimulationConfig {
            failures: FailurePolicy {
                min_fit_clients: 4,
                ..FailurePolicy::default()
            },
            ..config(1)
        },
        9,
    );
    let initial = sim.server().global().clone();
    let report = sim.run_one_round().unwrap();
    assert!(!report.aggregated);
    assert_eq!(sim.server().global(), &initial);

    // Seeded fault injection: some clients dropped, the same ones for the same seed.
    let injected = |seed| {
        let mut sim = flaky(
            SimulationConfig {
                failures: FailurePolicy {
                    client_failure_rate: 0.5,
                    ..FailurePolicy::default()
                },
                seed,
                ..config(6)
            },
            9,
        );
        let reports = sim.run(|_, _| Ok(())).unwrap();
        reports
            .iter()
            .map(|r| r.failed.iter().map(|f| f.client).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let first = injected(7);
    assert_eq!(first, injected(7));
    let dropped: usize = first.iter().map(Vec::len).sum();
    assert!(dropped > 0 && dropped < 18, "{first:?}");
    assert_ne!(first, injected(8));

    // A rate of 1 or more is refused.
    let bad = SimulationConfig {
        failures: FailurePolicy {
            client_failure_rate: 1.0,
            ..FailurePolicy::default()
        },
        ..config(1)
    };
    assert!(bad.validate().is_err());
}

#[test]
fn example_counts_that_overflow_are_an_error() {
    let quickstart = Quickstart::new(2);
    let model = quickstart.model::<B>(0, &Default::default()).unwrap();
    let spec = ShareSpec::new(Sharing::PLora);
    let global = fedvlm::federated::collect_shared(&model, &spec);
    let mut server = Server::new(global.clone(), FedAvg::new()).unwrap();
    let update = |client, num_examples| ClientUpdate {
        client,
        payload: Payload {
            round: 1,
            num_examples,
            ..global.clone()
        },
    };
    let result = server.aggregate(1, vec![update(0, u64::MAX), update(1, 2)]);
    assert!(matches!(
        result,
        Err(FedError::InvalidConfig {
            field: "num_examples",
            ..
        })
    ));
    assert_eq!(server.global(), &global);
    // A misshapen update is rejected and reported, not aggregated.
    let mut misshapen = update(1, 5);
    misshapen.payload.tensors.insert(
        "head.lora_b".into(),
        TensorValues::new("b", vec![2, 2], vec![0.0; 4]).unwrap(),
    );
    let rejected = server.aggregate(1, vec![update(0, 5), misshapen]).unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].client, 1);
}

#[test]
fn a_model_left_trainable_outside_the_adapters_is_refused() {
    let quickstart = Quickstart::new(2);
    let device = Default::default();
    let mut models = quickstart.models::<B>(&device).unwrap();
    models[1].features.weight = set_trainable(models[1].features.weight.clone(), true);
    let task = quickstart.task::<B>(&device).unwrap();
    let error = Simulation::new(
        config(1),
        ShareSpec::new(Sharing::PLora),
        task,
        FedAvg::new(),
        models,
    )
    .err()
    .expect("refused");
    assert!(error.to_string().contains("features.weight"), "{error}");
}

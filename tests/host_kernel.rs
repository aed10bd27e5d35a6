//! The CIFAR-10 host scoring (the CPU backend's default) against the tensor code it replaces:
//! scoring from the cache gives `EvalBatch::from_logits`'s loss and predictions for trained
//! adapters. (Host training is compared with sequential training in `cohort_training.rs`.)

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use fedvlm::data::{Cifar10, Cifar10Split};
use fedvlm::experiments::cifar10::{
    Cifar10Config, ClientSplit, CohortKernel, RunInputs, build_cache, federation, load_backbone,
};
use fedvlm::federated::{CohortMode, FederatedTask, Split};
use fedvlm::models::MobileNetV3;
use fedvlm::{Sharing, Simulation};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

type B = Autodiff<Flex>;

fn images(n: usize, seed: u64) -> Cifar10Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = (0..n * 3072).map(|_| rng.random_range(0..=255u8)).collect();
    Cifar10Split { images, labels }
}

/// In-memory run inputs over `data`, with its frozen-prefix cache built; nothing written.
fn cached_inputs<'a>(
    config: &'a Cifar10Config,
    data: Cifar10,
    split: &'a ClientSplit,
    backbone: &'a MobileNetV3<B>,
) -> RunInputs<'a, B> {
    let device = Default::default();
    let data = Arc::new(data);
    let cache = Arc::new(build_cache(config, &data, backbone, false, &device).unwrap());
    RunInputs {
        config,
        data,
        split,
        backbone,
        cache: Some(cache),
        out_dir: None,
        resume: false,
        progress: false,
        device,
    }
}

#[test]
fn host_scores_equal_the_tensor_path_for_trained_adapters() {
    let config = Cifar10Config {
        width_mult: 0.25,
        clients: 3,
        shards: 6,
        rounds: 3,
        local_epochs: 2,
        batch_size: 8,
        image_size: 32,
        lr: 0.3,
        global_eval_every: 0,
        cohort: CohortMode::Auto,
        ..Cifar10Config::default()
    };
    let data = Cifar10::from_splits(images(90, 1), images(40, 2)).unwrap();
    let backbone = load_backbone::<B>(&config, None, &Default::default()).unwrap();
    let split = ClientSplit {
        train: (0..3).map(|k| (k * 30..(k + 1) * 30).collect()).collect(),
        test: (0..3).map(|k| (k * 5..k * 5 + 25).collect()).collect(),
        global_test: (0..40).collect(),
        classes: vec![(0..10).collect(); 3],
    };
    let inputs = cached_inputs(&config, data, &split, &backbone);
    for sharing in [Sharing::PLora, Sharing::FfaLora] {
        let fed = federation(&inputs, sharing).unwrap();
        let strategy = config.build_strategy(fed.privacy_delta()).unwrap();
        let mut sim =
            Simulation::new(fed.config, fed.spec, fed.task, strategy, fed.models).unwrap();
        sim.run(|_, _| Ok(())).unwrap();
        let mut host = federation(&inputs, sharing).unwrap().task;
        host.set_cohort_kernel(CohortKernel::Host);
        let mut tensor = federation(&inputs, sharing).unwrap().task;
        tensor.set_cohort_kernel(CohortKernel::Tensor);
        for k in 0..3 {
            let model = sim.client(k).unwrap().model();
            for (split, batch) in [
                (Split::Test, (0..25).collect::<Vec<_>>()),
                (Split::GlobalTest, (3..37).collect()),
            ] {
                let a = host.evaluate(model, k, split, &batch).unwrap();
                let b = tensor.evaluate(model, k, split, &batch).unwrap();
                assert_eq!(a.loss_count, b.loss_count);
                assert_eq!(a.targets, b.targets);
                let tol = 1e-6 * b.loss_sum.abs().max(1.0);
                assert!(
                    (a.loss_sum - b.loss_sum).abs() <= tol,
                    "{sharing} client {k} {split:?}: {} vs {}",
                    a.loss_sum,
                    b.loss_sum
                );
                assert_eq!(
                    a.predictions, b.predictions,
                    "{sharing} client {k} {split:?}"
                );
            }
        }
        // The adapters trained (their delta is part of what was compared).
        let state = sim.client(0).unwrap().state();
        let b = &state.tensors["classifier.0.lora_b"].values;
        assert!(
            b.iter().any(|v| v.abs() > 1e-4),
            "{sharing}: B is still zero"
        );
    }
}

/// Two clients, one round of one epoch, on a small backbone.
fn small_config() -> Cifar10Config {
    Cifar10Config {
        width_mult: 0.25,
        clients: 2,
        shards: 4,
        rounds: 1,
        local_epochs: 1,
        batch_size: 8,
        image_size: 32,
        global_eval_every: 0,
        ..Cifar10Config::default()
    }
}

#[test]
fn a_client_row_past_the_dataset_is_a_typed_error_on_both_kernels() {
    let config = small_config();
    let data = Cifar10::from_splits(images(40, 1), images(20, 2)).unwrap();
    let backbone = load_backbone::<B>(&config, None, &Default::default()).unwrap();
    // A split made for a larger dataset: client 1's test rows run past the 20 test images.
    let split = ClientSplit {
        train: vec![(0..20).collect(), (20..40).collect()],
        test: vec![(0..10).collect(), (15..25).collect()],
        global_test: (0..20).collect(),
        classes: vec![(0..10).collect(); 2],
    };
    let inputs = cached_inputs(&config, data, &split, &backbone);
    for kernel in [CohortKernel::Host, CohortKernel::Tensor] {
        let fed = federation(&inputs, Sharing::PLora).unwrap();
        let mut task = fed.task;
        task.set_cohort_kernel(kernel);
        let model = fed.models[1].clone().valid();
        assert!(task.evaluate(&model, 1, Split::Test, &[0, 1, 2]).is_ok());
        let error = task
            .evaluate(&model, 1, Split::Test, &[4, 5, 6])
            .expect_err("rows 20 and 21 are past the test split");
        assert!(
            error.to_string().contains("20"),
            "{kernel:?}: the error names the row: {error}"
        );
    }
}

#[test]
fn a_client_training_on_rows_past_the_dataset_fails_alone_on_every_path() {
    let base = small_config();
    let data = Cifar10::from_splits(images(40, 1), images(20, 2)).unwrap();
    let backbone = load_backbone::<B>(&base, None, &Default::default()).unwrap();
    // A split made for a larger dataset: client 1's training rows run past the 40 images.
    let split = ClientSplit {
        train: vec![(0..20).collect(), (30..50).collect()],
        test: vec![(0..10).collect(), (10..20).collect()],
        global_test: (0..20).collect(),
        classes: vec![(0..10).collect(); 2],
    };
    let paths = [
        (CohortMode::Auto, CohortKernel::Host),
        (CohortMode::Auto, CohortKernel::Tensor),
        (CohortMode::Off, CohortKernel::Auto),
    ];
    for (cohort, kernel) in paths {
        let config = Cifar10Config {
            cohort,
            ..base.clone()
        };
        let inputs = cached_inputs(&config, data.clone(), &split, &backbone);
        let fed = federation(&inputs, Sharing::PLora).unwrap();
        let strategy = config.build_strategy(fed.privacy_delta()).unwrap();
        let mut task = fed.task;
        task.set_cohort_kernel(kernel);
        let mut sim = Simulation::new(fed.config, fed.spec, task, strategy, fed.models).unwrap();
        let reports = sim.run(|_, _| Ok(())).unwrap();
        let round = reports.iter().find(|r| r.round == 1).expect("round 1 ran");
        let failed: Vec<usize> = round.failed.iter().map(|r| r.client).collect();
        assert_eq!(failed, [1], "{cohort:?} {kernel:?}: {:?}", round.failed);
        let reason = &round.failed[0].reason;
        assert!(
            reason.contains("40"),
            "{cohort:?} {kernel:?}: the reason names the first row past the data: {reason}"
        );
        // Client 0 trained and was aggregated: the shared B moved off zero.
        let b = &sim.client(0).unwrap().state().tensors["classifier.0.lora_b"].values;
        assert!(b.iter().any(|v| v.abs() > 1e-6), "{cohort:?} {kernel:?}");
    }
}

//! Backend-generic parity: the same checks on burn's Flex (CPU, in CI) and on CUDA
//! (`FEDVLM_TEST_CUDA=1 cargo test --features cuda --test backend_parity`, which
//! `scripts/gpu_check.sh` runs). Each model is compared with its reference implementation's
//! committed outputs in f32, and in f16 and bf16 (weights and inputs cast with
//! `models::cast_floats`) within stated tolerances; LoRA and payload invariants hold exactly.
//!
//! Tolerances, relative to the largest reference value: f32 1e-4 absolute (as the Flex-only
//! suites), f16 5e-3, bf16 4e-2 (measured on Flex: 1.6e-3 and 1.3e-2; 13 and 16 fewer mantissa
//! bits than f32, through every layer).

mod common;

use burn::module::AutodiffModule;
use burn::nn::LinearConfig;
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::backend::AutodiffBackend;
use common::backend::{BackendTest, run_on_test_backend, test_backend_name};
use common::{TensorFile, florence2_fixtures};
use fedvlm::federated::{ShareSpec, apply_payload, collect_shared};
use fedvlm::models::florence2::Florence2;
use fedvlm::models::{MobileNetV3, MobileNetV3Config, Precision, cast_floats};
use fedvlm::params::{Payload, WireDtype};
use fedvlm::synthetic::Quickstart;
use fedvlm::{FedAvg, LoraConfig, PersonalizedLora, Sharing, Simulation};

const F32_TOLERANCE: f32 = 1e-4;

/// Relative tolerance of a half-precision forward pass.
fn half_tolerance(precision: Precision) -> f32 {
    match precision {
        Precision::F32 => F32_TOLERANCE,
        Precision::F16 => 5e-3,
        Precision::Bf16 => 4e-2,
    }
}

/// `values` of `tensor` as f32 (whatever its dtype).
fn floats<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
    tensor
        .cast(burn::tensor::DType::F32)
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 values")
}

/// Largest |a - b| over the largest |b|, or the absolute difference in f32.
fn check_close(what: &str, got: &[f32], expected: &[f32], precision: Precision) {
    assert_eq!(got.len(), expected.len(), "{what}: lengths");
    let diff = got
        .iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = expected.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let bound = match precision {
        Precision::F32 => F32_TOLERANCE,
        half => half_tolerance(half) * scale.max(1.0),
    };
    println!(
        "[{}] {what} {precision:?}: max |diff| {diff:.3e} (bound {bound:.1e})",
        test_backend_name()
    );
    assert!(
        diff.is_finite() && diff <= bound,
        "{what} {precision:?}: differs by {diff} > {bound}"
    );
}

const PRECISIONS: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

struct MobileNetMatchesTorchvision;

impl BackendTest for MobileNetMatchesTorchvision {
    fn run<B: AutodiffBackend>(device: &B::Device) {
        let dir = common::repo_root().join("tests/fixtures/mobilenet_v3");
        let io = TensorFile::open(dir.join("io.safetensors"));
        let config = MobileNetV3Config::small(10).with_width_mult(0.25);
        let model = MobileNetV3::<B::InnerBackend>::load_safetensors(
            dir.join("small_w025.safetensors"),
            &config,
            device,
        )
        .expect("loads");
        let input: Tensor<B::InnerBackend, 4> = io.float("input", device);
        let expected: Tensor<B::InnerBackend, 2> = io.float("small_w025.logits", device);
        let expected = floats(expected);
        for precision in PRECISIONS {
            let model = cast_floats(model.clone(), precision);
            let logits = model.forward(input.clone().cast(precision.dtype()));
            check_close(
                "MobileNetV3-small logits",
                &floats(logits),
                &expected,
                precision,
            );
        }
    }
}

#[test]
fn mobilenet_v3_matches_torchvision() {
    run_on_test_backend::<MobileNetMatchesTorchvision>();
}

struct Florence2MatchesTransformers;

impl BackendTest for Florence2MatchesTransformers {
    fn run<B: AutodiffBackend>(device: &B::Device) {
        let io = TensorFile::open(florence2_fixtures().join("tiny_io.safetensors"));
        let model =
            Florence2::<B::InnerBackend>::load(florence2_fixtures().join("tiny_native"), device)
                .expect("loads");
        let expected: Tensor<B::InnerBackend, 3> = io.float("logits", device);
        let expected = floats(expected);
        let pixels: Tensor<B::InnerBackend, 4> = io.float("pixel_values", device);
        for precision in PRECISIONS {
            let model = cast_floats(model.clone(), precision);
            let logits = model
                .forward(
                    pixels.clone().cast(precision.dtype()),
                    io.int("input_ids", device),
                    io.int("decoder_input_ids", device),
                )
                .expect("forward");
            check_close(
                "Florence-2 tiny logits",
                &floats(logits),
                &expected,
                precision,
            );
        }
    }
}

#[test]
fn florence2_tiny_matches_transformers() {
    run_on_test_backend::<Florence2MatchesTransformers>();
}

struct LoraInvariants;

impl BackendTest for LoraInvariants {
    fn run<B: AutodiffBackend>(device: &B::Device) {
        B::seed(device, 5);
        let base = LinearConfig::new(24, 16).init::<B>(device);
        // burn initialises parameters lazily, and each clone of an uninitialised one draws its
        // own values: initialise before cloning.
        let _ = (base.weight.val(), base.bias.as_ref().map(|b| b.val()));
        let layer = PersonalizedLora::from_linear(base.clone(), &LoraConfig::new(4, 8.0), 3)
            .expect("adapter");
        let x = Tensor::<B, 2>::random([5, 24], Distribution::Normal(0.0, 1.0), device);
        // B = 0 at initialisation: the base layer's output exactly.
        let (with, without) = (
            floats(layer.forward(x.clone())),
            floats(base.forward(x.clone())),
        );
        let d = with
            .iter()
            .zip(&without)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(
            with, without,
            "B = 0 must leave the output unchanged (max diff {d})"
        );
        // After one step, the adapter moves the output; merging gives the same function.
        let loss = layer.forward(x.clone()).powi_scalar(2).mean();
        let grads = loss.backward();
        let grad_b = layer.lora_b.grad(&grads).expect("B trains");
        assert!(floats(grad_b.clone()).iter().any(|g| *g != 0.0));
        let stepped = PersonalizedLora {
            lora_b: layer
                .lora_b
                .clone()
                .map(|b| b - Tensor::from_inner(grad_b.clone()).mul_scalar(0.5)),
            ..layer.clone()
        };
        let adapted = floats(stepped.forward(x.clone()));
        assert_ne!(adapted, floats(base.forward(x.clone())));
        let merged = floats(stepped.clone().merge().forward(x.clone()));
        check_close("merged LoRA", &merged, &adapted, Precision::F32);
    }
}

#[test]
fn lora_invariants_hold() {
    run_on_test_backend::<LoraInvariants>();
}

struct PayloadInvariants;

impl BackendTest for PayloadInvariants {
    fn run<B: AutodiffBackend>(device: &B::Device) {
        let quickstart = Quickstart::new(2);
        let spec = ShareSpec::new(Sharing::PLora);
        let model = quickstart.model::<B>(0, device).expect("model").valid();
        let other = quickstart.model::<B>(1, device).expect("model").valid();
        // Under pLoRA only B travels.
        let shared = collect_shared(&model, &spec);
        assert!(
            shared.names().all(|n| !n.ends_with("lora_a")),
            "{:?}",
            shared.names().collect::<Vec<_>>()
        );
        assert!(shared.names().any(|n| n.ends_with("lora_b")));
        // Through the wire and back onto another client's model, exactly (f32) and within
        // half precision's rounding (f16).
        let mut sent = shared.clone();
        for (_, tensor) in sent.tensors.iter_mut() {
            for (i, v) in tensor.values.iter_mut().enumerate() {
                *v = (i as f32 * 0.37).sin();
            }
        }
        let bytes = sent.to_bytes(WireDtype::F32).expect("bytes");
        let received = Payload::from_bytes(&bytes).expect("payload");
        let applied = apply_payload(&other, &received, &spec).expect("applies");
        assert_eq!(collect_shared(&applied, &spec).tensors, sent.tensors);
        // A private A is refused.
        let private = fedvlm::federated::collect_client_state(&model, &spec);
        assert!(apply_payload(&other, &private, &spec).is_err());
    }
}

#[test]
fn payload_invariants_hold() {
    run_on_test_backend::<PayloadInvariants>();
}

struct QuickstartRounds;

impl BackendTest for QuickstartRounds {
    fn run<B: AutodiffBackend>(device: &B::Device) {
        let mut quickstart = Quickstart::new(3);
        quickstart.simulation.rounds = 2;
        quickstart.simulation.progress = false;
        let run = |device: &B::Device| {
            Simulation::new(
                quickstart.simulation.clone(),
                ShareSpec::new(Sharing::PLora),
                quickstart.task::<B>(device).expect("task"),
                FedAvg::new(),
                quickstart.models::<B>(device).expect("models"),
            )
            .expect("simulation")
            .run(|_, _| Ok(()))
            .expect("runs")
        };
        let reports = run(device);
        let flex = {
            type F = burn::backend::Autodiff<burn::backend::Flex>;
            Simulation::new(
                quickstart.simulation.clone(),
                ShareSpec::new(Sharing::PLora),
                quickstart.task::<F>(&Default::default()).expect("task"),
                FedAvg::new(),
                quickstart.models::<F>(&Default::default()).expect("models"),
            )
            .expect("simulation")
            .run(|_, _| Ok(()))
            .expect("runs")
        };
        assert_eq!(reports.len(), 3);
        for (got, cpu) in reports.iter().zip(&flex) {
            let losses = |r: &fedvlm::federated::RoundReport| {
                r.clients
                    .iter()
                    .filter_map(|c| c.test.as_ref().map(|m| m.loss as f32))
                    .collect::<Vec<_>>()
            };
            // CUDA sums in another order, and two rounds of training amplify the rounding:
            // compared at half precision's tolerance.
            check_close(
                &format!("quickstart round {} client losses", got.round),
                &losses(got),
                &losses(cpu),
                Precision::F16,
            );
        }
    }
}

#[test]
fn quickstart_rounds_match_the_cpu() {
    run_on_test_backend::<QuickstartRounds>();
}

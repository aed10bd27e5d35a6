//! The adapter layer: initialisation, trainability, merge, 1x1 convolutions.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::nn::LinearConfig;
use burn::nn::conv::Conv2dConfig;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{Distribution, Tensor, TensorData, Tolerance};
use fedvlm::lora::apply_sharing;
use fedvlm::{FedError, LoraConfig, PersonalizedLora, Sharing};

type B = Autodiff<Flex>;
type I = Flex;

fn data<const D: usize>(t: &Tensor<B, D>) -> TensorData {
    t.to_data()
}

#[test]
fn fresh_adapter_computes_exactly_the_base_layer() {
    let device = Default::default();
    let base = LinearConfig::new(12, 5).init::<B>(&device);
    let x = Tensor::<B, 3>::random([2, 3, 12], Distribution::Normal(0.0, 1.0), &device);
    let expected = base.forward(x.clone());
    let layer = PersonalizedLora::from_linear(base, &LoraConfig::paper(), 1).unwrap();
    // B = 0 so BA = 0: bit-identical, not merely close.
    assert_eq!(layer.forward(x).to_data(), expected.to_data());
    assert_eq!(layer.lora_a.dims(), [4, 12]);
    assert_eq!(layer.lora_b.dims(), [5, 4]);
    let b: Vec<f32> = layer.lora_b.val().to_data().to_vec().unwrap();
    assert!(b.iter().all(|v| *v == 0.0));
    let a: Vec<f32> = layer.lora_a.val().to_data().to_vec().unwrap();
    let bound = 1.0 / 12f32.sqrt();
    assert!(a.iter().all(|v| v.abs() <= bound) && a.iter().any(|v| *v != 0.0));
}

#[test]
fn same_seed_same_a_other_seed_other_a() {
    let device = Default::default();
    let make = |seed| {
        let base = LinearConfig::new(8, 8).init::<B>(&device);
        PersonalizedLora::from_linear(base, &LoraConfig::paper(), seed).unwrap()
    };
    assert_eq!(data(&make(3).lora_a.val()), data(&make(3).lora_a.val()));
    assert_ne!(data(&make(3).lora_a.val()), data(&make(4).lora_a.val()));
}

fn train_steps(sharing: Sharing) -> (PersonalizedLora<B>, PersonalizedLora<B>) {
    let device = Default::default();
    let base = LinearConfig::new(6, 3).init::<B>(&device);
    let layer = PersonalizedLora::from_linear(base, &LoraConfig::new(2, 4.0), 9).unwrap();
    let layer = apply_sharing(layer, sharing);
    let before = layer.clone();
    let mut optim = AdamWConfig::new().init::<B, PersonalizedLora<B>>();
    let mut layer = layer;
    for _ in 0..3 {
        let x = Tensor::<B, 2>::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
        let loss = layer.forward(x).powi_scalar(2).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &layer);
        layer = optim.step(1e-2, layer, grads);
    }
    (before, layer)
}

#[test]
fn training_changes_only_the_trainable_adapter_tensors() {
    let (before, after) = train_steps(Sharing::PLora);
    assert_eq!(data(&before.weight.val()), data(&after.weight.val()));
    let bias = |l: &PersonalizedLora<B>| data(&l.bias.as_ref().unwrap().val());
    assert_eq!(bias(&before), bias(&after));
    assert_ne!(data(&before.lora_a.val()), data(&after.lora_a.val()));
    assert_ne!(data(&before.lora_b.val()), data(&after.lora_b.val()));
    // Parameter ids survive the optimiser (so its state stays attached).
    assert_eq!(before.lora_b.id, after.lora_b.id);
}

#[test]
fn ffa_lora_keeps_a_frozen() {
    let (before, after) = train_steps(Sharing::FfaLora);
    assert_eq!(data(&before.lora_a.val()), data(&after.lora_a.val()));
    assert_eq!(data(&before.weight.val()), data(&after.weight.val()));
    assert_ne!(data(&before.lora_b.val()), data(&after.lora_b.val()));
}

#[test]
fn merged_and_unmerged_outputs_agree() {
    let (_, trained) = train_steps(Sharing::PLora);
    let device = Default::default();
    let layer = trained.valid();
    let x = Tensor::<I, 2>::random([5, 6], Distribution::Normal(0.0, 1.0), &device);
    let unmerged = layer.forward(x.clone());
    let merged = layer.merge();
    assert!(merged.merged);
    merged
        .forward(x)
        .to_data()
        .assert_approx_eq::<f32>(&unmerged.to_data(), Tolerance::absolute(1e-5));
}

#[test]
fn pointwise_convolution_matches_burns_conv2d() {
    let device = Default::default();
    let conv = Conv2dConfig::new([6, 4], [1, 1]).init::<I>(&device);
    let x = Tensor::<I, 4>::random([2, 6, 3, 5], Distribution::Normal(0.0, 1.0), &device);
    let expected = conv.forward(x.clone());
    let layer = PersonalizedLora::from_conv1x1(conv, &LoraConfig::paper(), 2).unwrap();
    layer
        .forward_conv(x)
        .to_data()
        .assert_approx_eq::<f32>(&expected.to_data(), Tolerance::absolute(1e-5));
}

#[test]
fn non_pointwise_convolution_is_refused() {
    let device = Default::default();
    let conv = Conv2dConfig::new([6, 4], [3, 3]).init::<I>(&device);
    let err = PersonalizedLora::from_conv1x1(conv, &LoraConfig::paper(), 2).unwrap_err();
    assert!(matches!(err, FedError::UnsupportedLayer(_)), "{err}");
}

#[test]
fn bad_configs_are_refused() {
    let device = Default::default();
    for config in [
        LoraConfig::new(0, 8.0),
        LoraConfig::new(4, f64::NAN),
        LoraConfig::new(4, 8.0).with_dropout(1.0),
    ] {
        let base = LinearConfig::new(4, 4).init::<I>(&device);
        let err = PersonalizedLora::from_linear(base, &config, 0).unwrap_err();
        assert!(matches!(err, FedError::InvalidConfig { .. }), "{err}");
    }
}

#[test]
fn sharing_table() {
    use fedvlm::lora::AdapterMatrix::{A, B as Bm};
    let table = [
        (Sharing::PLora, [true, false, true, true]),
        (Sharing::FedAvgLora, [true, true, true, true]),
        (Sharing::FfaLora, [false, false, true, true]),
        (Sharing::FedSaLora, [true, true, true, false]),
    ];
    for (rule, [train_a, share_a, train_b, share_b]) in table {
        assert_eq!(rule.trains(A), train_a, "{rule}");
        assert_eq!(rule.shares(A), share_a, "{rule}");
        assert_eq!(rule.trains(Bm), train_b, "{rule}");
        assert_eq!(rule.shares(Bm), share_b, "{rule}");
        assert_eq!(rule.name().parse::<Sharing>().unwrap(), rule);
    }
    assert!("nope".parse::<Sharing>().is_err());
}

//! The folded MobileNetV3 backbone ([`MobileNetV3::fold_for_inference`]) against the unfused
//! model in eval mode: small and large, several widths, input sizes (CIFAR's 64 px, odd sizes)
//! and batch sizes; a perturbed model must fail the same check; bad inputs give typed errors.

use std::path::Path;

use burn::backend::Flex;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;
use fedvlm::FedError;
use fedvlm::LoraConfig;
use fedvlm::models::mobilenet_v3::blocks::{BlockLayer, Feature};
use fedvlm::models::mobilenet_v3::{FrozenBatchNorm2d, Pointwise};
use fedvlm::models::{AdapterTargets, FoldedMobileNetV3, MobileNetV3, MobileNetV3Config};

type B = Flex;

/// Parity bound: `max |folded - unfused| <= TOLERANCE * max(1, max |unfused|)`.
const TOLERANCE: f32 = 1e-5;

/// Applies `f` to every batch norm of the backbone.
fn for_each_norm(model: &mut MobileNetV3<B>, mut f: impl FnMut(&mut FrozenBatchNorm2d<B>)) {
    for feature in &mut model.features {
        match feature {
            Feature::Stem(l) => f(&mut l.1),
            Feature::LastConv(l) => f(&mut l.1),
            Feature::InvertedResidual(block) => {
                for layer in &mut block.block {
                    match layer {
                        BlockLayer::Expand(l) => f(&mut l.1),
                        BlockLayer::Depthwise(l) => f(&mut l.1),
                        BlockLayer::Project(l) => f(&mut l.1),
                        BlockLayer::SqueezeExcitation(_) => {}
                    }
                }
            }
        }
    }
}

fn uniform(n: usize, lo: f64, hi: f64, device: &Device<B>) -> Param<Tensor<B, 1>> {
    Param::from_tensor(Tensor::random([n], Distribution::Uniform(lo, hi), device))
}

/// Sets `bn`'s running statistics to those of `y` (what training leaves in them; otherwise a
/// random model's signal dies out over the layers and its features hardly depend on the
/// input), with a random scale and shift, and returns `bn(y)`.
fn calibrate(bn: &mut FrozenBatchNorm2d<B>, y: Tensor<B, 4>) -> Tensor<B, 4> {
    let device = y.device();
    let [n, c, h, w] = y.dims();
    let flat = y.clone().swap_dims(0, 1).reshape([c, n * h * w]);
    let (var, mean) = flat.var_mean(1);
    bn.running_mean = Param::from_tensor(mean.reshape([c]));
    bn.running_var = Param::from_tensor(var.reshape([c]).add_scalar(1e-3));
    bn.weight = uniform(c, 0.5, 1.5, &device);
    bn.bias = uniform(c, -0.3, 0.3, &device);
    bn.forward(y)
}

/// A random model whose batch norms hold the statistics of their inputs on random images
/// (see [`calibrate`]): not identities, so folding matters, and a signal that reaches the
/// pooled features.
fn random_model(config: &MobileNetV3Config) -> MobileNetV3<B> {
    random_model_on(config, images(4, [64, 64], config.seed + 1000))
}

/// [`random_model`] with its batch norms calibrated on `x`.
fn random_model_on(config: &MobileNetV3Config, mut x: Tensor<B, 4>) -> MobileNetV3<B> {
    let device = Default::default();
    <B as Backend>::seed(&device, config.seed);
    let mut model = MobileNetV3::<B>::new(config, &device);
    for feature in &mut model.features {
        x = match feature {
            Feature::Stem(l) => l.2.forward(calibrate(&mut l.1, l.0.forward(x))),
            Feature::LastConv(l) => l.2.forward(calibrate(&mut l.1, l.0.forward(x))),
            Feature::InvertedResidual(block) => {
                let mut h = x.clone();
                for layer in &mut block.block {
                    h = match layer {
                        BlockLayer::Expand(l) => l.2.forward(calibrate(&mut l.1, l.0.forward(h))),
                        BlockLayer::Depthwise(l) => {
                            l.2.forward(calibrate(&mut l.1, l.0.forward(h)))
                        }
                        BlockLayer::SqueezeExcitation(se) => se.forward(h),
                        BlockLayer::Project(l) => calibrate(&mut l.1, l.0.forward(h)),
                    };
                }
                if block.use_res_connect { h + x } else { h }
            }
        };
    }
    model
}

fn images(batch: usize, side: [usize; 2], seed: u64) -> Tensor<B, 4> {
    let device = Default::default();
    <B as Backend>::seed(&device, seed);
    Tensor::random(
        [batch, 3, side[0], side[1]],
        Distribution::Normal(0.0, 1.0),
        &device,
    )
}

/// `max |folded - unfused|` over the pooled features, and `max |unfused|`.
fn deviation(folded: &FoldedMobileNetV3, model: &MobileNetV3<B>, x: Tensor<B, 4>) -> (f32, f32) {
    let expected = model.features_pooled(x.clone());
    let got = folded.features_pooled(x).expect("folded forward");
    assert_eq!(got.dims(), expected.dims());
    let scale: f32 = expected.clone().abs().max().into_scalar().elem();
    let diff: f32 = (got - expected).abs().max().into_scalar().elem();
    (diff, scale)
}

fn assert_parity(name: &str, folded: &FoldedMobileNetV3, model: &MobileNetV3<B>, x: Tensor<B, 4>) {
    let dims = x.dims();
    let (diff, scale) = deviation(folded, model, x);
    println!("{name} {dims:?}: max |diff| {diff:.3e} (max |value| {scale:.3e})");
    assert!(
        diff <= TOLERANCE * scale.max(1.0),
        "{name} {dims:?}: folded differs by {diff} (values up to {scale})"
    );
}

/// Fails if the model's pooled features hardly depend on the input: a parity check on such a
/// model would not see most of the network.
fn assert_depends_on_input(name: &str, model: &MobileNetV3<B>) {
    let a = model.features_pooled(images(1, [64, 64], 101));
    let b = model.features_pooled(images(1, [64, 64], 102));
    let d: f32 = (a.clone() - b).abs().max().into_scalar().elem();
    let scale: f32 = a.abs().max().into_scalar().elem();
    assert!(
        d > 0.05 * scale,
        "{name}: features of two images differ by only {d} (scale {scale})"
    );
}

#[test]
fn small_and_large_match_the_unfused_model() {
    let cases = [
        ("small", MobileNetV3Config::small(10)),
        ("large", MobileNetV3Config::large(10)),
        (
            "small_w050",
            MobileNetV3Config::small(10).with_width_mult(0.5),
        ),
        (
            "small_dilated_reduced",
            MobileNetV3Config::small(10)
                .with_width_mult(0.5)
                .with_dilated(true)
                .with_reduced_tail(true),
        ),
    ];
    // (batch, [height, width]): CIFAR's 64 px, batch 1, odd and non-square sizes, a batch
    // that is not a multiple of the chunk size, the smallest image the strides allow.
    let inputs = [
        (3, [64, 64]),
        (1, [64, 64]),
        (2, [37, 37]),
        (1, [33, 50]),
        (11, [32, 32]),
        (1, [1, 1]),
    ];
    for (i, (name, config)) in cases.into_iter().enumerate() {
        let model = random_model(&config.with_seed(i as u64 + 1));
        assert_depends_on_input(name, &model);
        let folded = model.fold_for_inference().expect("fold");
        for (j, (batch, side)) in inputs.into_iter().enumerate() {
            assert_parity(name, &folded, &model, images(batch, side, j as u64));
        }
    }
}

#[test]
fn chunk_size_does_not_change_the_result() {
    let model = random_model(&MobileNetV3Config::small(10).with_width_mult(0.5));
    let x = images(9, [40, 40], 7);
    let reference = model.fold_for_inference().expect("fold");
    let a = reference.features_pooled(x.clone()).expect("forward");
    for chunk in [1, 4, 16, usize::MAX] {
        let b = reference
            .clone()
            .with_chunk_size(chunk)
            .features_pooled(x.clone())
            .expect("forward");
        // Rows are computed independently of their chunk: equal up to the matrix kernel's
        // blocking, which may depend on the number of rows.
        let d: f32 = (a.clone() - b).abs().max().into_scalar().elem();
        assert!(d <= 1e-5, "chunk {chunk}: {d}");
    }
}

#[test]
fn torchvision_fixtures_fold_to_the_same_features() {
    // Every parameter and buffer randomised by scripts/generate_reference.py.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mobilenet_v3");
    let cases = [
        (
            "small_w025",
            MobileNetV3Config::small(10).with_width_mult(0.25),
        ),
        (
            "large_w025",
            MobileNetV3Config::large(10).with_width_mult(0.25),
        ),
        (
            "small_w025_dilated",
            MobileNetV3Config::small(10)
                .with_width_mult(0.25)
                .with_dilated(true)
                .with_reduced_tail(true),
        ),
    ];
    let device = Default::default();
    for (name, config) in cases {
        let model =
            MobileNetV3::<B>::load_torchvision(dir.join(format!("{name}.pth")), &config, &device)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let folded = model.fold_for_inference().expect("fold");
        assert_parity(name, &folded, &model, images(2, [64, 64], 3));
    }
}

#[test]
fn a_wrong_fold_fails_the_parity_check() {
    // The check must see a batch norm the fold did not take into account: fold a model, then
    // compare against the same model with one statistic changed by 1%.
    let model = random_model(&MobileNetV3Config::small(10).with_seed(5));
    let folded = model.fold_for_inference().expect("fold");
    let x = images(2, [64, 64], 1);
    let mut changed = 0;
    let mut perturbed = model.clone();
    for_each_norm(&mut perturbed, |bn| {
        changed += 1;
        if changed == 9 {
            bn.running_var = bn.running_var.clone().map(|v| v * 1.01);
        }
    });
    let (diff, scale) = deviation(&folded, &perturbed, x.clone());
    assert!(
        diff > TOLERANCE * scale.max(1.0),
        "a 1% change of one running variance went unnoticed: {diff}"
    );
    // And the unperturbed model still passes with the same input.
    assert_parity("small", &folded, &model, x);
}

#[test]
fn adapters_on_pointwise_convs_are_merged() {
    let device = Default::default();
    let model = random_model(&MobileNetV3Config::small(10).with_width_mult(0.5));
    let mut adapted = model
        .with_adapters(
            &LoraConfig::new(4, 8.0),
            AdapterTargets::ClassifierAndPointwise,
            3,
        )
        .expect("adapters");
    // Give the adapters a non-zero `B` so that they change the output.
    let mut seen = 0;
    for feature in &mut adapted.features {
        let Feature::InvertedResidual(block) = feature else {
            continue;
        };
        for layer in &mut block.block {
            if let BlockLayer::Expand((Pointwise::Lora(lora), ..))
            | BlockLayer::Project((Pointwise::Lora(lora), ..)) = layer
            {
                let [o, r] = lora.lora_b.dims();
                lora.lora_b = Param::from_tensor(Tensor::random(
                    [o, r],
                    Distribution::Uniform(-0.02, 0.02),
                    &device,
                ));
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no adapter on a pointwise convolution");
    let folded = adapted.fold_for_inference().expect("fold");
    let plain = model_without_update(&adapted);
    let x = images(2, [64, 64], 2);
    assert_parity("small_adapted", &folded, &adapted, x.clone());
    // The adapters matter: the plain model's features differ.
    let (diff, scale) = deviation(&folded, &plain, x);
    assert!(
        diff > TOLERANCE * scale.max(1.0),
        "adapters had no effect: {diff}"
    );
}

/// `model` with every adapter's `B` set to zero.
fn model_without_update(model: &MobileNetV3<B>) -> MobileNetV3<B> {
    let mut plain = model.clone();
    for feature in &mut plain.features {
        let Feature::InvertedResidual(block) = feature else {
            continue;
        };
        for layer in &mut block.block {
            if let BlockLayer::Expand((Pointwise::Lora(lora), ..))
            | BlockLayer::Project((Pointwise::Lora(lora), ..)) = layer
            {
                lora.lora_b = lora.lora_b.clone().map(|b| b.zeros_like());
            }
        }
    }
    plain
}

#[test]
fn bad_inputs_are_typed_errors() {
    let model = random_model(&MobileNetV3Config::small(10).with_width_mult(0.25));
    let folded = model.fold_for_inference().expect("fold");
    let dim = folded.feature_dim();
    // Wrong channel count.
    let err = folded
        .features_pooled::<B>(Tensor::zeros([2, 4, 32, 32], &Default::default()))
        .expect_err("4 channels");
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err:?}");
    // Fewer values than the shape says.
    let err = folded
        .features_pooled_host(&[0.0; 10], 1, 32, 32)
        .expect_err("short");
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err:?}");
    // An overflowing shape.
    let err = folded
        .features_pooled_host(&[], usize::MAX, usize::MAX, 2)
        .expect_err("overflow");
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err:?}");
    // An empty batch: no rows, no error.
    let out = folded.features_pooled_host(&[], 0, 32, 32).expect("empty");
    assert!(out.is_empty());
    let t = folded
        .features_pooled::<B>(Tensor::zeros([0, 3, 32, 32], &Default::default()))
        .expect("empty tensor");
    assert_eq!(t.dims(), [0, dim]);
    // An empty image.
    let err = folded
        .features_pooled_host(&[], 1, 0, 0)
        .expect_err("0x0 image");
    assert!(matches!(err, FedError::InvalidConfig { .. }), "{err:?}");
}

#[test]
fn cifar_cache_built_folded_equals_the_backend_build() {
    use fedvlm::data::{Cifar10, Cifar10Split, ImageTransform, to_tensor_batch};
    use fedvlm::experiments::cifar10::{CacheBackbone, PrefixCache};
    use fedvlm::federated::Split;

    let split = |n: usize, salt: usize| Cifar10Split {
        images: (0..n * 3072)
            .map(|i| ((i * 7 + salt) * 2_654_435_761 % 251) as u8)
            .collect(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
    };
    let data = Cifar10::from_splits(split(21, 0), split(6, 1)).expect("data");
    let transform = ImageTransform::imagenet(64);
    let device = Default::default();
    // Batch norms calibrated on the images themselves: preprocessed (upsampled) images have
    // other statistics than noise.
    let calibration = to_tensor_batch::<B>(data.train(), &[0, 1, 2, 3], &transform, None, &device)
        .expect("images");
    let model = random_model_on(&MobileNetV3Config::small(10).with_seed(9), calibration);
    let build = |backbone| {
        PrefixCache::build_with(&model, &data, (21, 5), &transform, false, &device, backbone)
            .expect("cache")
    };
    // On Flex, `Auto` (what `PrefixCache::build` uses) is the folded path.
    assert_eq!(
        CacheBackbone::Auto.resolve::<B>(&device),
        CacheBackbone::Folded
    );
    assert_eq!(
        CacheBackbone::Auto.resolve::<burn::backend::Autodiff<B>>(&device),
        CacheBackbone::Folded
    );
    assert_eq!(
        CacheBackbone::Backend.resolve::<B>(&device),
        CacheBackbone::Backend
    );
    let folded = build(CacheBackbone::Folded);
    let reference = build(CacheBackbone::Backend);
    assert_eq!(
        (folded.feature_dim, folded.hidden_dim),
        (reference.feature_dim, reference.hidden_dim)
    );
    for (split, n) in [(Split::Train, 21), (Split::Test, 5)] {
        assert_eq!(folded.len(split), n);
        assert_eq!(reference.len(split), n);
        let rows: Vec<usize> = (0..n).collect();
        let (xa, ba) = folded.rows::<B>(split, &rows, &device).expect("rows");
        let (xb, bb) = reference.rows::<B>(split, &rows, &device).expect("rows");
        for (name, a, b) in [("x", xa, xb), ("base", ba, bb)] {
            let scale: f32 = b.clone().abs().max().into_scalar().elem();
            let d: f32 = (a - b).abs().max().into_scalar().elem();
            println!("{split:?} {name}: max |diff| {d:.3e} (max |value| {scale:.3e})");
            assert!(
                d <= TOLERANCE * scale.max(1.0),
                "{split:?} {name} differs by {d}"
            );
        }
    }
}

//! Drop-path in DaViT: the rate schedule, whole samples dropped, training only.

use super::*;

#[test]
fn drop_path_rates_follow_transformers_linear_schedule() {
    let base = DavitConfig::base();
    assert_eq!(base.drop_path_rate, 0.1);
    let rates = base.drop_path_rates();
    // torch.linspace(0, 0.1, 24) (float32): 2 blocks per depth, depths 1/1/9/1.
    assert_eq!(rates.len(), 24);
    for (i, expected) in [
        (0, 0.0),
        (1, 0.004347826354205608),
        (11, 0.04782608896493912),
        (23, 0.1),
    ] {
        assert!((rates[i] - expected).abs() < 1e-8, "rate {i}: {}", rates[i]);
    }
    // Read from config.json; out of range refused.
    assert_eq!(tiny_config().drop_path_rate, 0.0);
    let bad = DavitConfig {
        drop_path_rate: 1.0,
        ..DavitConfig::base()
    };
    assert!(matches!(
        bad.validate(),
        Err(FedError::InvalidConfig { .. })
    ));
}
#[test]
fn drop_path_drops_whole_samples_while_training_only() {
    use fedvlm::models::florence2::davit::layers::drop_path;
    let device = Default::default();
    let n = 2000;
    let x = Tensor::<B, 3>::random([n, 3, 4], Distribution::Uniform(1.0, 2.0), &device);
    // Inference (no autodiff): the identity, whatever the probability.
    let same = drop_path(x.clone(), 0.5);
    same.into_data().assert_eq(&x.clone().into_data(), true);
    // Training: each sample is all zeros or x / keep.
    AB::seed(&device, 5);
    let trained = drop_path(Tensor::<AB, 3>::from_inner(x.clone()), 0.25).inner();
    let ratio = (trained / x.clone()).into_data().into_vec::<f32>().unwrap();
    let mut dropped = 0;
    for sample in ratio.chunks(12) {
        let first = sample[0];
        assert!(
            sample.iter().all(|&r| (r - first).abs() < 1e-6),
            "{sample:?}"
        );
        assert!(first == 0.0 || (first - 1.0 / 0.75).abs() < 1e-6, "{first}");
        dropped += usize::from(first == 0.0);
    }
    let fraction = dropped as f64 / n as f64;
    assert!((fraction - 0.25).abs() < 0.04, "dropped {fraction}");
    // Probability 0 on the autodiff backend: the identity.
    let kept = drop_path(Tensor::<AB, 3>::from_inner(x.clone()), 0.0).inner();
    kept.into_data().assert_eq(&x.into_data(), true);
}
#[test]
fn the_tower_applies_drop_path_when_training_and_not_at_inference() {
    use burn::module::AutodiffModule;
    let device = Default::default();
    let config = DavitConfig {
        drop_path_rate: 0.5,
        ..tiny_config()
    };
    AB::seed(&device, 9);
    let tower: Davit<AB> = config.init(&device).expect("tower");
    let pixels = Tensor::<B, 4>::random([4, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let (inference, _) = tower.valid().forward(pixels.clone()).expect("forward");
    AB::seed(&device, 1);
    let (training, _) = tower
        .forward(Tensor::from_inner(pixels.clone()))
        .expect("forward");
    let diff = max_abs_diff(inference.clone(), training.inner());
    assert!(diff > 0.1, "drop-path changed nothing: {diff}");
    // The same weights with every block's rate at 0 train like they infer.
    let mut tower = tower;
    for block in tower.blocks.iter_mut().flatten() {
        block.spatial_block.drop_path = 0.0;
        block.channel_block.drop_path = 0.0;
    }
    let (training, _) = tower.forward(Tensor::from_inner(pixels)).expect("forward");
    let gap = max_abs_diff(inference, training.inner());
    assert!(gap < TOLERANCE, "{gap}");
}

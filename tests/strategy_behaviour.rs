//! Strategy behaviour beyond Flower's vectors (those are in `strategy_flower.rs`): invalid
//! settings are typed errors, DP noise has the configured std and is seeded per round, DP
//! clipping happens before the inner strategy, client-side DP is forwarded, states save and
//! restore bit for bit, and `StrategyKind` parses every strategy.

use fedvlm::FedError;
use fedvlm::federated::{ClientUpdate, Payload, TensorValues};
use fedvlm::strategy::{
    Bulyan, DpClientSideFixedClipping, DpConfig, DpFixedClipping, FedAdagrad, FedAdam, FedAvg,
    FedAvgM, FedMedian, FedTrimmedAvg, FedYogi, Krum, MultiKrum, ServerOptConfig, Strategy,
    StrategyKind, StrategyState, clip_update, flower_weighted_average,
};
fn tensor_payload(a: Vec<f32>, b: Vec<f32>, num_examples: u64) -> Payload {
    let mut p = Payload {
        num_examples,
        ..Payload::default()
    };
    p.tensors.insert(
        "a".into(),
        TensorValues::new("a", vec![a.len()], a).unwrap(),
    );
    p.tensors.insert(
        "b".into(),
        TensorValues::new("b", vec![b.len()], b).unwrap(),
    );
    p
}

/// A deterministic pseudo-random value in [-1, 1).
fn noise(i: usize, salt: usize) -> f32 {
    let x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add((salt as u64).wrapping_mul(1442695040888963407));
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn sample_updates(global: &Payload, n: usize, round: usize) -> Vec<ClientUpdate> {
    (0..n)
        .map(|client| {
            let mut p = global.clone();
            for (k, t) in p.tensors.values_mut().enumerate() {
                for (i, v) in t.values.iter_mut().enumerate() {
                    *v += 0.1 * noise(i + 1000 * k, client + 17 * round);
                }
            }
            p.num_examples = 10 + client as u64 * 3;
            ClientUpdate { client, payload: p }
        })
        .collect()
}

fn small_global() -> Payload {
    tensor_payload(
        (0..12).map(|i| noise(i, 99)).collect(),
        (0..10).map(|i| noise(i, 98)).collect(),
        0,
    )
}

fn expect_config_error(result: fedvlm::Result<Payload>, field: &str) {
    match result {
        Err(FedError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
        Err(other) => panic!("expected InvalidConfig({field}), got {other}"),
        Ok(_) => panic!("expected InvalidConfig({field}), got a result"),
    }
}

#[test]
fn invalid_settings_are_typed_errors() {
    let global = small_global();
    let six = sample_updates(&global, 6, 1);
    for beta in [0.5, -0.1, f64::NAN] {
        expect_config_error(FedTrimmedAvg::new(beta).aggregate(1, &global, &six), "beta");
    }
    // Krum needs n >= 2f + 3: 6 updates tolerate f = 1, not f = 2.
    assert!(Krum::new(1).aggregate(1, &global, &six).is_ok());
    expect_config_error(
        Krum::new(2).aggregate(1, &global, &six),
        "num_malicious_nodes",
    );
    expect_config_error(
        MultiKrum::new(2, 2).aggregate(1, &global, &six),
        "num_malicious_nodes",
    );
    expect_config_error(
        MultiKrum::new(0, 0).aggregate(1, &global, &six),
        "num_nodes_to_select",
    );
    // More to select than there are: all of them, as Flower.
    assert!(MultiKrum::new(1, 10).aggregate(1, &global, &six).is_ok());
    // Bulyan needs n >= 4f + 3.
    expect_config_error(
        Bulyan::new(1).aggregate(1, &global, &six),
        "num_malicious_nodes",
    );
    let seven = sample_updates(&global, 7, 1);
    assert!(Bulyan::new(1).aggregate(1, &global, &seven).is_ok());

    let bad_opt = [
        (
            ServerOptConfig {
                beta_1: 1.5,
                ..ServerOptConfig::fedadam()
            },
            "beta_1",
        ),
        (
            ServerOptConfig {
                beta_2: -0.1,
                ..ServerOptConfig::fedadam()
            },
            "beta_2",
        ),
        (
            ServerOptConfig {
                tau: -1.0,
                ..ServerOptConfig::fedadam()
            },
            "tau",
        ),
        (
            ServerOptConfig {
                eta: f64::INFINITY,
                ..ServerOptConfig::fedadam()
            },
            "eta",
        ),
    ];
    for (config, field) in bad_opt {
        expect_config_error(FedAdam::new(config).aggregate(1, &global, &six), field);
        expect_config_error(FedYogi::new(config).aggregate(1, &global, &six), field);
        expect_config_error(FedAdagrad::new(config).aggregate(1, &global, &six), field);
    }
    expect_config_error(
        FedAvgM::new(1.0, -0.5).aggregate(1, &global, &six),
        "server_momentum",
    );
    expect_config_error(
        FedAvgM::new(f64::NAN, 0.5).aggregate(1, &global, &six),
        "server_learning_rate",
    );

    let dp = DpConfig {
        noise_multiplier: 1.0,
        clipping_norm: 1.0,
        num_sampled_clients: 6,
        seed: 1,
    };
    let bad_dp = [
        (
            DpConfig {
                noise_multiplier: -1.0,
                ..dp
            },
            "noise_multiplier",
        ),
        (
            DpConfig {
                clipping_norm: 0.0,
                ..dp
            },
            "clipping_norm",
        ),
        (
            DpConfig {
                num_sampled_clients: 0,
                ..dp
            },
            "num_sampled_clients",
        ),
    ];
    for (config, field) in bad_dp {
        expect_config_error(
            DpFixedClipping::new(FedAvg::new(), config).aggregate(1, &global, &six),
            field,
        );
        expect_config_error(
            DpClientSideFixedClipping::new(FedAvg::new(), config).aggregate(1, &global, &six),
            field,
        );
    }

    // The public average checks its inputs.
    let refs: Vec<&Payload> = six.iter().map(|u| &u.payload).collect();
    assert!(flower_weighted_average(&global, &refs, &[0.5]).is_err());
    assert!(flower_weighted_average(&global, &[], &[]).is_err());
    let mut missing = six[0].payload.clone();
    missing.tensors.remove("a");
    assert!(flower_weighted_average(&global, &[&missing], &[1.0]).is_err());
    let weights = vec![1.0 / 6.0; 6];
    let average = flower_weighted_average(&global, &refs, &weights).unwrap();
    assert_eq!(
        average.tensors,
        FedAvg::uniform()
            .aggregate(1, &global, &six)
            .unwrap()
            .tensors
    );

    // No update, or an update that does not fit the global: errors, not panics.
    let strategies: Vec<Box<dyn Strategy>> = vec![
        Box::new(FedAvg::new()),
        Box::new(FedAvgM::new(0.5, 0.9)),
        Box::new(FedAdam::default()),
        Box::new(FedYogi::default()),
        Box::new(FedAdagrad::default()),
        Box::new(FedMedian::new()),
        Box::new(FedTrimmedAvg::default()),
        Box::new(Krum::new(0)),
        Box::new(MultiKrum::new(0, 2)),
        Box::new(Bulyan::new(0)),
        Box::new(DpFixedClipping::new(FedAvg::new(), dp)),
    ];
    let mut short = seven.clone();
    short[3].payload.tensors.get_mut("a").unwrap().values.pop();
    let mut renamed = seven.clone();
    let t = renamed[2].payload.tensors.remove("b").unwrap();
    renamed[2].payload.tensors.insert("c".into(), t);
    for mut s in strategies {
        let name = s.name();
        assert!(
            matches!(
                s.aggregate(1, &global, &[]),
                Err(FedError::InvalidConfig { .. })
            ),
            "{name} without updates"
        );
        assert!(
            matches!(
                s.aggregate(1, &global, &short),
                Err(FedError::RejectedUpdate { client: 3, .. })
            ),
            "{name} with a short tensor"
        );
        assert!(
            matches!(
                s.aggregate(1, &global, &renamed),
                Err(FedError::RejectedUpdate { client: 2, .. })
            ),
            "{name} with a renamed tensor"
        );
    }
}

#[test]
fn dp_noise_has_the_configured_std_and_is_seeded_per_round() {
    let n = 20_000;
    let global = tensor_payload(vec![0.0; n / 2], vec![0.0; n / 2], 0);
    let updates: Vec<ClientUpdate> = (0..4)
        .map(|client| ClientUpdate {
            client,
            payload: Payload {
                num_examples: 5,
                ..global.clone()
            },
        })
        .collect();
    let config = DpConfig {
        noise_multiplier: 1.0,
        clipping_norm: 2.0,
        num_sampled_clients: 8,
        seed: 42,
    };
    let std = config.noise_stdv();
    assert_eq!(std, 0.25);
    let mut dp = DpFixedClipping::new(FedAvg::new(), config);
    let out = dp.aggregate(3, &global, &updates).unwrap();
    let values: Vec<f64> = out
        .tensors
        .values()
        .flat_map(|t| t.values.iter().map(|&v| f64::from(v)))
        .collect();
    let mean = values.iter().sum::<f64>() / n as f64;
    let sample_std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    // Standard errors: std / sqrt(n) = 0.0018 for the mean, std / sqrt(2n) = 0.00125 for the
    // std; the bounds are 4 of them.
    assert!(mean.abs() < 4.0 * std / (n as f64).sqrt(), "mean {mean}");
    assert!(
        (sample_std - std).abs() < 4.0 * std / (2.0 * n as f64).sqrt(),
        "std {sample_std} vs {std}"
    );
    // Same seed and round: the same noise; another round or seed: other noise.
    let again = DpFixedClipping::new(FedAvg::new(), config)
        .aggregate(3, &global, &updates)
        .unwrap();
    assert_eq!(again.tensors, out.tensors);
    let next = dp.aggregate(4, &global, &updates).unwrap();
    assert_ne!(next.tensors, out.tensors);
    let other_seed = DpFixedClipping::new(FedAvg::new(), DpConfig { seed: 43, ..config })
        .aggregate(3, &global, &updates)
        .unwrap();
    assert_ne!(other_seed.tensors, out.tensors);
    // The client-side variant adds the same noise to the unclipped aggregate.
    let client_side = DpClientSideFixedClipping::new(FedAvg::new(), config)
        .aggregate(3, &global, &updates)
        .unwrap();
    assert_eq!(client_side.tensors, out.tensors);
}

#[test]
fn dp_server_side_clips_each_update_before_the_inner_strategy() {
    let global = small_global();
    let mut updates = sample_updates(&global, 5, 2);
    // One update far away: after clipping it is within the norm of the global.
    for t in updates[4].payload.tensors.values_mut() {
        t.values.iter_mut().for_each(|v| *v += 10.0);
    }
    let config = DpConfig {
        noise_multiplier: 0.0,
        clipping_norm: 0.2,
        num_sampled_clients: 5,
        seed: 0,
    };
    let out = DpFixedClipping::new(FedAvg::new(), config)
        .aggregate(1, &global, &updates)
        .unwrap();
    let mut clipped = updates.clone();
    for u in &mut clipped {
        clip_update(&mut u.payload, &global, config.clipping_norm);
    }
    let want = FedAvg::new().aggregate(1, &global, &clipped).unwrap();
    assert_eq!(out.tensors, want.tensors);
    let mut moved = out.clone();
    // The average of clipped updates moves at most the clipping norm.
    assert!(clip_update(&mut moved, &global, 1e9) <= 0.2 * (1.0 + 1e-6));
}

#[test]
fn client_side_dp_asks_clients_to_clip_and_boxes_forward_it() {
    let config = DpConfig {
        noise_multiplier: 0.0,
        clipping_norm: 0.7,
        num_sampled_clients: 3,
        seed: 0,
    };
    let boxed: Box<dyn Strategy> = Box::new(DpClientSideFixedClipping::new(FedAvg::new(), config));
    assert_eq!(boxed.client_clipping_norm(), Some(0.7));
    let server: Box<dyn Strategy> = Box::new(DpFixedClipping::new(FedAvg::new(), config));
    assert_eq!(server.client_clipping_norm(), None);
    assert_eq!(FedAvg::new().client_clipping_norm(), None);
    // Without noise the client-side wrapper is its inner strategy.
    let global = small_global();
    let updates = sample_updates(&global, 3, 5);
    let mut client_side = DpClientSideFixedClipping::new(FedAvg::new(), config);
    let out = client_side.aggregate(1, &global, &updates).unwrap();
    let plain = FedAvg::new().aggregate(1, &global, &updates).unwrap();
    assert_eq!(out.tensors, plain.tensors);
}

/// Runs `rounds` rounds of `strategy` from `global`, feeding each result back as the global.
fn run_rounds(strategy: &mut dyn Strategy, global: &mut Payload, rounds: std::ops::Range<u64>) {
    for r in rounds {
        let updates = sample_updates(global, 5, r as usize);
        *global = strategy.aggregate(r, global, &updates).unwrap();
    }
}

fn check_restore(make: &dyn Fn() -> Box<dyn Strategy>) {
    let mut uninterrupted = make();
    let mut global = small_global();
    run_rounds(uninterrupted.as_mut(), &mut global, 1..4);
    let saved = uninterrupted.save_state().unwrap();
    // Through JSON, as a durable run would store it.
    let json = serde_json::to_string(&saved).unwrap();
    let restored_state: StrategyState = serde_json::from_str(&json).unwrap();
    assert_eq!(restored_state, saved);
    let mut resumed = make();
    resumed.load_state(restored_state).unwrap();
    let mut global_resumed = global.clone();
    run_rounds(uninterrupted.as_mut(), &mut global, 4..6);
    run_rounds(resumed.as_mut(), &mut global_resumed, 4..6);
    for (name, t) in &global.tensors {
        let other = &global_resumed.tensors[name].values;
        for (a, b) in t.values.iter().zip(other) {
            assert_eq!(a.to_bits(), b.to_bits(), "{}: {name}", uninterrupted.name());
        }
    }
    // Both end in the same state.
    assert_eq!(
        resumed.save_state().unwrap(),
        uninterrupted.save_state().unwrap()
    );
}

#[test]
fn save_and_restore_is_bit_exact() {
    let dp = DpConfig {
        noise_multiplier: 0.5,
        clipping_norm: 0.3,
        num_sampled_clients: 5,
        seed: 11,
    };
    let makers: Vec<Box<dyn Fn() -> Box<dyn Strategy>>> = vec![
        Box::new(|| Box::new(FedAdam::new(ServerOptConfig::fedadam()))),
        Box::new(|| Box::new(FedYogi::new(ServerOptConfig::fedyogi()))),
        Box::new(|| Box::new(FedAdagrad::new(ServerOptConfig::fedadagrad()))),
        Box::new(|| Box::new(FedAvgM::new(0.8, 0.9))),
        Box::new(move || Box::new(DpFixedClipping::new(FedAdam::default(), dp))),
        Box::new(move || Box::new(DpClientSideFixedClipping::new(FedAvgM::new(1.0, 0.5), dp))),
        Box::new(|| Box::new(FedAvg::new())),
        Box::new(|| Box::new(FedMedian::new())),
    ];
    for make in &makers {
        check_restore(make.as_ref());
    }

    // FedAdam: round 4 after restoring equals round 4 of the uninterrupted run, and differs
    // from round 4 of a strategy that lost its moments.
    let mut a = FedAdam::default();
    let mut global = small_global();
    run_rounds(&mut a, &mut global, 1..4);
    let updates = sample_updates(&global, 5, 4);
    let mut b = FedAdam::default();
    b.load_state(a.save_state().unwrap()).unwrap();
    let want = a.aggregate(4, &global, &updates).unwrap();
    let got = b.aggregate(4, &global, &updates).unwrap();
    assert_eq!(want.tensors, got.tensors);
    let fresh = FedAdam::default().aggregate(4, &global, &updates).unwrap();
    assert_ne!(fresh.tensors, want.tensors);
}

#[test]
fn states_do_not_load_into_other_strategies() {
    let mut adam = FedAdam::default();
    let mut global = small_global();
    run_rounds(&mut adam, &mut global, 1..3);
    let state = adam.save_state().unwrap();
    assert_eq!(state.name, "fedadam");
    assert_eq!(state.round, 2);
    assert!(state.tensors.keys().any(|k| k.starts_with("m/")));
    assert!(FedYogi::default().load_state(state.clone()).is_err());
    assert!(FedAvg::new().load_state(state.clone()).is_err());
    assert!(FedAvgM::new(0.5, 0.9).load_state(state.clone()).is_err());
    // A stateless strategy restores its own (empty) state.
    let empty = FedAvg::new().save_state().unwrap();
    assert!(empty.tensors.is_empty());
    assert!(FedMedian::new().load_state(empty).is_ok());
    // A value that is not an f32 is rejected.
    let mut bad = state;
    if let Some(values) = bad.tensors.values_mut().next() {
        values[0] = 0.1;
    }
    assert!(FedAdam::default().load_state(bad).is_err());
}

#[test]
fn strategy_kinds_parse_and_build() {
    let names = [
        "fedavg",
        "fedprox",
        "fedavgm",
        "fedadagrad",
        "fedadam",
        "fedyogi",
        "fedmedian",
        "fedtrimmedavg",
        "krum",
        "multikrum",
        "bulyan",
    ];
    let global = small_global();
    let updates = sample_updates(&global, 5, 1);
    for name in names {
        let kind: StrategyKind = name.parse().unwrap();
        assert_eq!(kind.as_str(), name);
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{name}\""));
        let mut strategy = kind.build(0.01);
        let out = strategy.aggregate(1, &global, &updates).unwrap();
        assert_eq!(out.num_values(), global.num_values());
    }
    assert!("fedsgd".parse::<StrategyKind>().is_err());
}

//! Every server strategy against vectors made by Flower 1.42's own classes
//! (`scripts/generate_strategy_vectors.py` -> `tests/fixtures/strategy/flower_vectors.json`),
//! round after round, and `clip_update` against Flower's `compute_clip_model_update`. Invalid
//! settings, DP noise statistics and state save/restore are in `strategy_behaviour.rs`.

use std::collections::BTreeMap;

use fedvlm::federated::{ClientUpdate, Payload, TensorValues};
use fedvlm::strategy::{
    Bulyan, DpConfig, DpFixedClipping, FedAdagrad, FedAdam, FedAvg, FedAvgM, FedMedian,
    FedTrimmedAvg, FedYogi, Krum, MultiKrum, ServerOptConfig, Strategy, clip_update,
};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/strategy/flower_vectors.json");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("fixture parses")
}

fn payload(tensors: &Value, num_examples: u64) -> Payload {
    let tensors = tensors
        .as_object()
        .expect("tensor map")
        .iter()
        .map(|(name, t)| {
            let shape = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let values = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (name.clone(), TensorValues { shape, values })
        })
        .collect();
    Payload {
        round: 0,
        num_examples,
        tensors,
    }
}

/// Expected values as f64 (Flower's FedAdam returns float64).
fn expected(tensors: &Value) -> BTreeMap<String, Vec<f64>> {
    tensors
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, t)| {
            let values = t["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (name.clone(), values)
        })
        .collect()
}

fn param(case: &Value, key: &str, default: f64) -> f64 {
    case["params"][key].as_f64().unwrap_or(default)
}

fn opt_config(case: &Value, defaults: ServerOptConfig) -> ServerOptConfig {
    ServerOptConfig {
        eta: param(case, "eta", defaults.eta),
        beta_1: param(case, "beta_1", defaults.beta_1),
        beta_2: param(case, "beta_2", defaults.beta_2),
        tau: param(case, "tau", defaults.tau),
    }
}

fn dp_config(case: &Value) -> DpConfig {
    DpConfig {
        noise_multiplier: param(case, "noise_multiplier", 0.0),
        clipping_norm: param(case, "clipping_norm", 1.0),
        num_sampled_clients: param(case, "num_sampled_clients", 1.0) as usize,
        seed: 7,
    }
}

fn build(case: &Value) -> Box<dyn Strategy> {
    let f = param(case, "num_malicious_nodes", 0.0) as usize;
    match case["strategy"].as_str().unwrap() {
        "fedavg" => Box::new(FedAvg::new()),
        "fedavgm" => Box::new(FedAvgM::new(
            param(case, "server_learning_rate", 1.0),
            param(case, "server_momentum", 0.0),
        )),
        "fedadagrad" => Box::new(FedAdagrad::new(opt_config(
            case,
            ServerOptConfig::fedadagrad(),
        ))),
        "fedadam" => Box::new(FedAdam::new(opt_config(case, ServerOptConfig::fedadam()))),
        "fedyogi" => Box::new(FedYogi::new(opt_config(case, ServerOptConfig::fedyogi()))),
        "fedmedian" => Box::new(FedMedian::new()),
        "fedtrimmedavg" => Box::new(FedTrimmedAvg::new(param(case, "beta", 0.2))),
        "krum" => Box::new(Krum::new(f)),
        "multikrum" => Box::new(MultiKrum::new(
            f,
            param(case, "num_nodes_to_select", 1.0) as usize,
        )),
        "bulyan" => Box::new(Bulyan::new(f)),
        "dp_fedavg" => Box::new(DpFixedClipping::new(FedAvg::new(), dp_config(case))),
        "dp_fedadam" => Box::new(DpFixedClipping::new(
            FedAdam::new(ServerOptConfig::fedadam()),
            dp_config(case),
        )),
        other => panic!("unknown strategy {other} in the fixture"),
    }
}

/// Runs every round of the named case and returns the largest error relative to
/// `max(1, |expected|)`, after checking that it is at most `tolerance` (0: bit-identical to
/// Flower's result rounded to f32).
fn check_case(name: &str, tolerance: f64) -> f64 {
    let all = vectors();
    let case = all["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    let mut strategy = build(case);
    let mut worst = 0f64;
    let mut previous: Option<Payload> = None;
    for round in case["rounds"].as_array().unwrap() {
        let r = round["round"].as_u64().unwrap();
        let global = payload(&round["global"], 0);
        if let (Some(prev), 0.0) = (&previous, tolerance) {
            // The fixture's global is Flower's previous result in f32: ours, exactly.
            assert_eq!(prev.tensors, global.tensors, "{name}: round {r} global");
        }
        let updates: Vec<ClientUpdate> = round["updates"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(client, u)| ClientUpdate {
                client,
                payload: payload(&u["tensors"], u["num_examples"].as_u64().unwrap()),
            })
            .collect();
        let out = strategy
            .aggregate(r, &global, &updates)
            .unwrap_or_else(|e| panic!("{name} round {r}: {e}"));
        assert_eq!(out.round, r);
        let want = expected(&round["expected"]);
        assert_eq!(
            out.tensors.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (tensor, values) in &want {
            let got = &out.tensors[tensor].values;
            assert_eq!(got.len(), values.len());
            for (i, (&g, &w)) in got.iter().zip(values).enumerate() {
                if tolerance == 0.0 {
                    assert_eq!(
                        g, w as f32,
                        "{name} round {r} {tensor}[{i}]: {g} vs Flower {w} (must be bit-identical)"
                    );
                }
                let err = (f64::from(g) - f64::from(w as f32)).abs() / w.abs().max(1.0);
                assert!(
                    err <= tolerance,
                    "{name} round {r} {tensor}[{i}]: {g} vs Flower {w}, error {err:e} > {tolerance:e}"
                );
                worst = worst.max(err);
            }
        }
        previous = Some(out);
    }
    println!("{name}: max error {worst:e}");
    worst
}

/// Tolerance where numpy sums float32 in an order this crate does not reproduce.
const SUM_ORDER_TOLERANCE: f64 = 1e-6;

#[test]
fn fedavg_is_bit_identical_to_flower() {
    check_case("fedavg", 0.0);
}

#[test]
fn fedavgm_is_bit_identical_to_flower_over_rounds() {
    check_case("fedavgm_momentum", 0.0);
    check_case("fedavgm_lr_only", 0.0);
    check_case("fedavgm_default", 0.0);
}

#[test]
fn fedadagrad_is_bit_identical_to_flower_over_rounds() {
    check_case("fedadagrad_default", 0.0);
    check_case("fedadagrad_custom", 0.0);
}

#[test]
fn fedadam_is_flower_rounded_to_f32_over_rounds() {
    check_case("fedadam_default", 0.0);
    check_case("fedadam_custom", 0.0);
}

#[test]
fn fedyogi_is_bit_identical_to_flower_over_rounds() {
    check_case("fedyogi_default", 0.0);
    check_case("fedyogi_custom", 0.0);
}

#[test]
fn fedmedian_is_bit_identical_to_flower() {
    check_case("fedmedian_odd", 0.0);
    check_case("fedmedian_even", 0.0);
}

#[test]
fn fedtrimmedavg_matches_flower() {
    for name in ["fedtrimmedavg_02", "fedtrimmedavg_03", "fedtrimmedavg_0"] {
        check_case(name, SUM_ORDER_TOLERANCE);
    }
}

#[test]
fn krum_and_multikrum_are_bit_identical_to_flower() {
    check_case("krum", 0.0);
    check_case("multikrum", 0.0);
}

#[test]
fn bulyan_matches_flower() {
    for name in ["bulyan_7", "bulyan_8", "bulyan_f0"] {
        check_case(name, SUM_ORDER_TOLERANCE);
    }
}

#[test]
fn dp_server_side_clipping_matches_flower_without_noise() {
    check_case("dp_fedavg", SUM_ORDER_TOLERANCE);
    check_case("dp_fedadam", SUM_ORDER_TOLERANCE);
}

#[test]
fn the_fixture_has_no_untested_case() {
    let tested = [
        "fedavg",
        "fedavgm_momentum",
        "fedavgm_lr_only",
        "fedavgm_default",
        "fedadagrad_default",
        "fedadagrad_custom",
        "fedadam_default",
        "fedadam_custom",
        "fedyogi_default",
        "fedyogi_custom",
        "fedmedian_odd",
        "fedmedian_even",
        "fedtrimmedavg_02",
        "fedtrimmedavg_03",
        "fedtrimmedavg_0",
        "krum",
        "multikrum",
        "bulyan_7",
        "bulyan_8",
        "bulyan_f0",
        "dp_fedavg",
        "dp_fedadam",
    ];
    let all = vectors();
    for case in all["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        assert!(tested.contains(&name), "case {name} is not tested");
    }
    assert_eq!(all["flwr_version"], "1.42.0");
}

#[test]
fn clip_update_matches_flower() {
    let all = vectors();
    let cases = all["clip_update"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut clipped_some = false;
    for case in cases {
        let c = case["clipping_norm"].as_f64().unwrap();
        let global = payload(&case["global"], 0);
        let mut update = payload(&case["update"], 1);
        let norm = clip_update(&mut update, &global, c);
        let flower_norm = case["norm"].as_f64().unwrap();
        assert!(
            (norm - flower_norm).abs() <= 1e-6 * flower_norm,
            "{norm} vs {flower_norm}"
        );
        clipped_some |= norm > c;
        for (name, want) in expected(&case["expected"]) {
            for (&g, &w) in update.tensors[&name].values.iter().zip(&want) {
                assert!(
                    (f64::from(g) - w).abs() <= SUM_ORDER_TOLERANCE * w.abs().max(1.0),
                    "{g} vs {w}"
                );
            }
        }
        // The clipped update's distance to the global is at most the clipping norm.
        let mut again = update.clone();
        assert!(clip_update(&mut again, &global, c) <= c * (1.0 + 1e-6));
    }
    assert!(clipped_some, "the fixture must clip at least one update");
}

//! Server-side aggregation and validation, and FedProx's client term.

use burn::backend::{Autodiff, Flex};
use burn::nn::LinearConfig;
use burn::tensor::Tensor;
use fedvlm::federated::{
    ClientUpdate, Payload, ProxAnchor, Server, ShareSpec, TensorValues, collect_shared,
    proximal_term,
};
use fedvlm::strategy::{FedAdam, ServerOptConfig};
use fedvlm::{FedAvg, FedError, FedProx, LoraConfig, PersonalizedLora, Sharing, Strategy};

type B = Autodiff<Flex>;

fn payload(values: &[f32], examples: u64) -> Payload {
    let mut p = Payload {
        num_examples: examples,
        ..Payload::default()
    };
    p.tensors.insert(
        "l.lora_b".into(),
        TensorValues::new("l.lora_b", vec![values.len()], values.to_vec()).unwrap(),
    );
    p
}

fn update(client: usize, values: &[f32], examples: u64) -> ClientUpdate {
    ClientUpdate {
        client,
        payload: payload(values, examples),
    }
}

fn values(p: &Payload) -> Vec<f32> {
    p.tensors["l.lora_b"].values.clone()
}

fn close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
    }
}

#[test]
fn fedavg_weighted_and_uniform_equal_hand_computation() {
    let global = payload(&[0.0, 0.0], 0);
    let updates = [update(0, &[1.0, 2.0], 1), update(1, &[4.0, -1.0], 3)];
    // Weighted: (1*[1,2] + 3*[4,-1]) / 4 = [13/4, -1/4].
    let out = FedAvg::new().aggregate(1, &global, &updates).unwrap();
    close(&values(&out), &[3.25, -0.25]);
    // Uniform (paper eq. 6): ([1,2] + [4,-1]) / 2 = [2.5, 0.5].
    let out = FedAvg::uniform().aggregate(1, &global, &updates).unwrap();
    close(&values(&out), &[2.5, 0.5]);
    // FedProx averages like FedAvg on the server.
    let out = FedProx::new(0.1).aggregate(1, &global, &updates).unwrap();
    close(&values(&out), &[3.25, -0.25]);
}

#[test]
fn fedadam_first_step_equals_hand_computation() {
    let global = payload(&[1.0], 0);
    let config = ServerOptConfig::default();
    let mut strategy = FedAdam::new(config);
    let out = strategy
        .aggregate(1, &global, &[update(0, &[3.0], 1)])
        .unwrap();
    // Flower 1.42: delta = 2; m = 0.1 * 2 = 0.2; v = 0.01 * 4 = 0.04 (both start at zero);
    // eta_norm = 0.1 * sqrt(1 - 0.99^2) / (1 - 0.9^2) = 0.0742460 (exponent round + 1 = 2);
    // x = 1 + eta_norm * 0.2 / (sqrt(0.04) + 1e-3) = 1.0738766.
    close(&values(&out), &[1.073_876_6]);
}

#[test]
fn fedprox_term_and_gradient() {
    let device = Default::default();
    let base = LinearConfig::new(3, 2).init::<B>(&device);
    let layer = PersonalizedLora::from_linear(base, &LoraConfig::new(2, 2.0), 5).unwrap();
    let spec = ShareSpec::new(Sharing::FedAvgLora);
    let mut global = collect_shared(&layer, &spec);
    for t in global.tensors.values_mut() {
        t.values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v += 0.1 * i as f32);
    }
    let mu = 0.3;
    let anchor = ProxAnchor::<B>::new(&global, &device);
    let term = proximal_term(&layer, &anchor, mu);
    // By hand: mu/2 * sum (w - g)^2 over A and B.
    let local = collect_shared(&layer, &spec);
    let mut expected = 0.0;
    for (name, t) in &local.tensors {
        for (w, g) in t.values.iter().zip(&global.tensors[name].values) {
            expected += (w - g) as f64 * (w - g) as f64;
        }
    }
    let got: f32 = term.clone().into_scalar();
    assert!(
        (got as f64 - mu / 2.0 * expected).abs() < 1e-5,
        "{got} vs {expected}"
    );
    // Gradient: mu * (w - g).
    let grads = term.backward();
    let grad_a: Vec<f32> = layer
        .lora_a
        .val()
        .grad(&grads)
        .unwrap()
        .to_data()
        .to_vec()
        .unwrap();
    let w = &local.tensors["lora_a"].values;
    let g = &global.tensors["lora_a"].values;
    let expected: Vec<f32> = w.iter().zip(g).map(|(w, g)| mu as f32 * (w - g)).collect();
    close(&grad_a, &expected);
    // Frozen tensors are not pulled: under FFA-LoRA A is frozen and not in the payload anyway;
    // with A frozen but anchored, the term ignores it.
    let frozen = fedvlm::lora::apply_sharing(layer, Sharing::FfaLora);
    let only_b: f32 = proximal_term(&frozen, &anchor, mu).into_scalar();
    assert!(only_b < got);
    let _unused: Tensor<B, 1> = Tensor::zeros([1], &device);
}

#[test]
fn server_rejects_bad_updates_and_keeps_its_state() {
    let global = payload(&[1.0, 1.0], 0);
    let mut server = Server::new(global.clone(), FedAvg::new()).unwrap();
    let mut unknown = update(2, &[0.0, 0.0], 1);
    unknown.payload.tensors.insert(
        "other".into(),
        TensorValues::new("other", vec![1], vec![0.0]).unwrap(),
    );
    let mut missing = update(5, &[0.0, 0.0], 1);
    missing.payload.tensors.clear();
    let bad = vec![
        update(0, &[f32::NAN, 0.0], 1),
        update(1, &[1.0, 2.0, 3.0], 1),
        unknown,
        update(3, &[f32::INFINITY, 0.0], 1),
        missing,
    ];
    let rejected = server.aggregate(1, bad).unwrap();
    assert_eq!(
        rejected.iter().map(|r| r.client).collect::<Vec<_>>(),
        [0, 1, 2, 3, 5]
    );
    assert_eq!(
        values(server.global()),
        [1.0, 1.0],
        "global must stay as it was"
    );

    let err = server.validate(&update(9, &[1.0], 1)).unwrap_err();
    assert!(
        matches!(err, FedError::RejectedUpdate { client: 9, .. }),
        "{err}"
    );

    // A good update next to a bad one: only the good one counts.
    let rejected = server
        .aggregate(
            2,
            vec![update(0, &[3.0, 5.0], 4), update(1, &[f32::NAN, 0.0], 4)],
        )
        .unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(values(server.global()), [3.0, 5.0]);
}

//! Hostile bytes for `Payload::from_bytes`: seeded mutations of valid payloads (F32, F16, BF16)
//! never panic and always come back as a typed `PayloadError`.

mod common;
use common::mutate::{Mutation, Report, random_set, safetensors_edits, truncations};

use fedvlm::federated::{Payload, PayloadError, TensorValues, WireDtype};

const SEED: u64 = 0x5EED_0001;

/// A small payload: three tensors of different ranks.
fn payload() -> Payload {
    let mut payload = Payload {
        round: 7,
        num_examples: 120,
        ..Payload::default()
    };
    let values = |n: usize| (0..n).map(|i| i as f32 * 0.25 - 1.0).collect::<Vec<f32>>();
    for (name, shape) in [
        ("decoder.layers.0.q_proj.lora_a", vec![2, 3]),
        ("decoder.layers.0.q_proj.lora_b", vec![3, 2]),
        ("head.bias", vec![4]),
    ] {
        let n = shape.iter().product();
        let tensor = TensorValues::new(name, shape, values(n)).expect("tensor");
        payload.tensors.insert(name.to_string(), tensor);
    }
    payload
}

fn parse(bytes: &[u8]) -> Result<Payload, PayloadError> {
    Payload::from_bytes(bytes)
}

fn check(dtype: WireDtype, seed: u64) {
    let valid = payload().to_bytes(dtype).expect("serialise");
    let parsed = parse(&valid).expect("the valid payload parses");
    assert_eq!(
        parsed.names().collect::<Vec<_>>(),
        payload().names().collect::<Vec<_>>()
    );
    let header_len = u64::from_le_bytes(valid[..8].try_into().expect("8")) as usize;
    let hot = [0, 8, header_len, 8 + header_len];
    let mut cases: Vec<Mutation> = truncations(valid.len(), valid.len(), 1);
    cases.extend(safetensors_edits(&valid, 3));
    cases.extend(random_set(seed, valid.len(), &hot, 600));

    let mut report = Report::new(&format!("Payload::from_bytes ({dtype:?})"), seed);
    for mutation in &cases {
        let bytes = mutation.apply(&valid);
        report.run(mutation, None, || {
            let payload = parse(&bytes)?;
            // What was accepted must be internally consistent.
            for (name, tensor) in &payload.tensors {
                let expected: usize = tensor.shape.iter().product();
                assert_eq!(expected, tensor.values.len(), "{name}");
                assert!(tensor.values.iter().all(|v| v.is_finite()), "{name}");
            }
            Ok::<_, PayloadError>(payload)
        });
    }
    report.finish();
}

#[test]
fn hostile_f32_payloads_are_typed_errors() {
    check(WireDtype::F32, SEED);
}

#[test]
fn hostile_f16_payloads_are_typed_errors() {
    check(WireDtype::F16, SEED + 1);
}

#[test]
fn hostile_bf16_payloads_are_typed_errors() {
    check(WireDtype::Bf16, SEED + 2);
}

#[test]
fn representative_messages() {
    let valid = payload().to_bytes(WireDtype::F32).expect("serialise");
    let err = parse(&valid[..valid.len() - 1]).expect_err("truncated");
    assert!(matches!(err, PayloadError::Malformed(_)), "{err}");
    assert!(err.to_string().starts_with("malformed payload"), "{err}");
    let mut huge = valid.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = parse(&huge).expect_err("huge header length");
    assert!(err.to_string().starts_with("malformed payload"), "{err}");
}

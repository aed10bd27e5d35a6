//! What travels: collecting, serialising, validating and applying shared tensors.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use fedvlm::federated::{
    Payload, PayloadError, ShareSpec, TensorValues, WireDtype, apply_payload, collect_shared,
    collect_where,
};
use fedvlm::{LoraConfig, PersonalizedLora, Sharing};

type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    layers: Vec<PersonalizedLora<B>>,
    head: Linear<B>,
}

fn net(seed: u64) -> Net<B> {
    let device = Default::default();
    let lora = LoraConfig::new(2, 4.0);
    let layers = [(8, 6), (6, 5)]
        .into_iter()
        .enumerate()
        .map(|(i, (d_in, d_out))| {
            let base = LinearConfig::new(d_in, d_out).init::<B>(&device);
            PersonalizedLora::from_linear(base, &lora, seed * 10 + i as u64).unwrap()
        })
        .collect();
    Net {
        layers,
        head: LinearConfig::new(5, 3).init(&device),
    }
}

fn tensor_names(bytes: &[u8]) -> Vec<(String, Vec<usize>)> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let mut names: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (name, view.shape().to_vec()))
        .collect();
    names.sort();
    names
}

#[test]
fn each_rule_sends_exactly_its_shared_tensors() {
    let model = net(1);
    let a = |i: usize, d_in: usize| (format!("layers.{i}.lora_a"), vec![2, d_in]);
    let b = |i: usize, d_out: usize| (format!("layers.{i}.lora_b"), vec![d_out, 2]);
    let cases = [
        (Sharing::PLora, vec![b(0, 6), b(1, 5)]),
        (Sharing::FfaLora, vec![b(0, 6), b(1, 5)]),
        (
            Sharing::FedAvgLora,
            vec![a(0, 8), b(0, 6), a(1, 6), b(1, 5)],
        ),
        (Sharing::FedSaLora, vec![a(0, 8), a(1, 6)]),
    ];
    for (rule, mut expected) in cases {
        expected.sort();
        let payload = collect_shared(&model, &ShareSpec::new(rule));
        let bytes = payload.to_bytes(WireDtype::F32).unwrap();
        assert_eq!(tensor_names(&bytes), expected, "{rule}");
        if matches!(rule, Sharing::PLora | Sharing::FfaLora) {
            assert!(
                !bytes.windows(6).any(|w| w == b"lora_a"),
                "{rule}: an A tensor name leaked into the bytes"
            );
        }
    }
}

#[test]
fn extra_shared_prefix_adds_the_head_only() {
    let model = net(1);
    let spec = ShareSpec::new(Sharing::PLora).also_share("head");
    let names: Vec<String> = collect_shared(&model, &spec)
        .names()
        .map(String::from)
        .collect();
    assert_eq!(
        names,
        [
            "head.bias",
            "head.weight",
            "layers.0.lora_b",
            "layers.1.lora_b"
        ]
    );
    // A prefix matches whole path segments only.
    let spec = ShareSpec::new(Sharing::PLora).also_share("hea");
    assert_eq!(collect_shared(&model, &spec).tensors.len(), 2);
}

fn sample_payload() -> Payload {
    let values: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) * 0.37).collect();
    let mut payload = Payload {
        round: 3,
        num_examples: 17,
        ..Payload::default()
    };
    payload.tensors.insert(
        "x.lora_b".into(),
        TensorValues::new("x.lora_b", vec![6, 4], values).unwrap(),
    );
    payload
}

#[test]
fn round_trips_in_every_precision() {
    let payload = sample_payload();
    for (dtype, rel) in [
        (WireDtype::F32, 0.0),
        (WireDtype::F16, 1.0 / 1024.0),
        (WireDtype::Bf16, 1.0 / 128.0),
    ] {
        let bytes = payload.to_bytes(dtype).unwrap();
        let back = Payload::from_bytes(&bytes).unwrap();
        assert_eq!((back.round, back.num_examples), (3, 17));
        let (orig, got) = (&payload.tensors["x.lora_b"], &back.tensors["x.lora_b"]);
        assert_eq!(orig.shape, got.shape);
        for (o, g) in orig.values.iter().zip(&got.values) {
            assert!((o - g).abs() <= rel * o.abs(), "{dtype:?}: {o} vs {g}");
        }
        // 24 values: data bytes plus an 8-byte length and a header padded to 8 bytes.
        let data = 24 * dtype.size();
        assert!(bytes.len() > data + 8 && (bytes.len() - data).is_multiple_of(8));
    }
    let f32_len = payload.to_bytes(WireDtype::F32).unwrap().len();
    let f16_len = payload.to_bytes(WireDtype::F16).unwrap().len();
    assert_eq!(f32_len - f16_len, 24 * 2);
}

#[test]
fn receipt_validates_the_bytes() {
    let bytes = sample_payload().to_bytes(WireDtype::F32).unwrap();
    assert!(matches!(
        Payload::from_bytes(&bytes[..bytes.len() - 3]),
        Err(PayloadError::Malformed(_))
    ));
    assert!(matches!(
        Payload::from_bytes(b"garbage"),
        Err(PayloadError::Malformed(_))
    ));

    // A safetensors file that is not a fedvlm payload.
    let data = [0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    let foreign = safetensors::serialize([("w", view)], None).unwrap();
    assert!(matches!(
        Payload::from_bytes(&foreign),
        Err(PayloadError::WrongFormat(None))
    ));

    // Another version.
    let needle = b"\"version\":\"1\"";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut other = bytes.clone();
    other[at + needle.len() - 2] = b'9';
    assert!(matches!(
        Payload::from_bytes(&other),
        Err(PayloadError::UnsupportedVersion { .. })
    ));

    // Non-finite values are refused on encode's way back in.
    let mut bad = sample_payload();
    bad.tensors.get_mut("x.lora_b").unwrap().values[5] = f32::NAN;
    let bytes = bad.to_bytes(WireDtype::F32).unwrap();
    assert!(matches!(
        Payload::from_bytes(&bytes),
        Err(PayloadError::NonFinite { .. })
    ));
}

#[test]
fn applying_keeps_ids_and_trainability_and_leaves_private_tensors() {
    let sender = net(1);
    let receiver = net(2);
    let spec = ShareSpec::new(Sharing::PLora);
    let payload = collect_shared(&sender, &spec);
    let ids_before = (receiver.layers[0].lora_b.id, receiver.layers[0].lora_a.id);
    let a_before = receiver.layers[0].lora_a.val().to_data();
    let mut sent = payload.clone();
    sent.tensors.get_mut("layers.0.lora_b").unwrap().values[0] = 0.5;
    let received = apply_payload(&receiver, &sent, &spec).unwrap();
    let layer = &received.layers[0];
    assert_eq!((layer.lora_b.id, layer.lora_a.id), ids_before);
    assert!(layer.lora_b.is_require_grad());
    assert!(!layer.weight.is_require_grad());
    let b: Vec<f32> = layer.lora_b.val().to_data().to_vec().unwrap();
    assert_eq!(b[0], 0.5);
    assert_eq!(
        layer.lora_a.val().to_data(),
        a_before,
        "private A must not change"
    );
    // The received B still trains.
    let x = burn::tensor::Tensor::<B, 2>::ones([1, 8], &Default::default());
    let grads = layer.forward(x).sum().backward();
    assert!(layer.lora_b.val().grad(&grads).is_some());
}

#[test]
fn applying_a_bad_payload_is_refused() {
    let model = net(1);
    let spec = ShareSpec::new(Sharing::PLora);
    let good = collect_shared(&model, &spec);

    let mut unknown = good.clone();
    let t = unknown.tensors["layers.0.lora_b"].clone();
    unknown.tensors.insert("layers.7.lora_b".into(), t);
    assert!(matches!(
        apply_payload(&model, &unknown, &spec),
        Err(PayloadError::UnknownTensor(name)) if name == "layers.7.lora_b"
    ));

    let mut shape = good.clone();
    shape.tensors.insert(
        "layers.0.lora_b".into(),
        TensorValues::new("b", vec![2, 6], vec![0.0; 12]).unwrap(),
    );
    assert!(matches!(
        apply_payload(&model, &shape, &spec),
        Err(PayloadError::ShapeMismatch { .. })
    ));

    let mut nan = good;
    nan.tensors.get_mut("layers.1.lora_b").unwrap().values[0] = f32::INFINITY;
    assert!(matches!(
        apply_payload(&model, &nan, &spec),
        Err(PayloadError::NonFinite { .. })
    ));
}

#[test]
fn receiving_enforces_the_sharing_rule() {
    let model = net(1);
    let everything = collect_where(&model, |_, _| true);
    let a_name = "layers.0.lora_a";
    let a = everything.tensors[a_name].clone();
    let weight = everything.tensors["layers.0.weight"].clone();
    let with = |name: &str, tensor: TensorValues| {
        let mut payload = collect_shared(&model, &ShareSpec::new(Sharing::PLora));
        payload.tensors.insert(name.to_string(), tensor);
        payload
    };
    // pLoRA and FFA-LoRA keep A private: a payload naming it is refused.
    for rule in [Sharing::PLora, Sharing::FfaLora] {
        let refused = apply_payload(&model, &with(a_name, a.clone()), &ShareSpec::new(rule));
        assert!(
            matches!(&refused, Err(PayloadError::NotShared { name, .. }) if name == a_name),
            "{rule}: {refused:?}"
        );
    }
    // FedSA-LoRA keeps B private.
    let fedsa = ShareSpec::new(Sharing::FedSaLora);
    let b_only = collect_shared(&model, &ShareSpec::new(Sharing::PLora));
    assert!(matches!(
        apply_payload(&model, &b_only, &fedsa),
        Err(PayloadError::NotShared { .. })
    ));
    // A frozen base weight is never received, under any rule, unless shared as an extra.
    for rule in Sharing::ALL {
        let refused = apply_payload(
            &model,
            &with("layers.0.weight", weight.clone()),
            &ShareSpec::new(rule),
        );
        assert!(
            matches!(refused, Err(PayloadError::NotShared { .. })),
            "{rule}"
        );
    }
    let extra = ShareSpec::new(Sharing::PLora).also_share("layers.0.weight");
    assert!(apply_payload(&model, &with("layers.0.weight", weight), &extra).is_ok());
    // FedAvg-LoRA shares A: accepted.
    let fedavg = ShareSpec::new(Sharing::FedAvgLora);
    assert!(apply_payload(&model, &with(a_name, a), &fedavg).is_ok());
}

#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
enum Dense<B: Backend> {
    Plain(Linear<B>),
    Lora(PersonalizedLora<B>),
}

#[derive(Module, Debug)]
struct Switchable<B: Backend> {
    fc: Dense<B>,
}

#[test]
fn enum_variant_names_stay_out_of_paths() {
    let device = Default::default();
    let base = LinearConfig::new(4, 3).init::<B>(&device);
    let lora = PersonalizedLora::from_linear(base, &LoraConfig::new(2, 2.0), 0).unwrap();
    let model = Switchable {
        fc: Dense::Lora(lora),
    };
    let names: Vec<String> = collect_shared(&model, &ShareSpec::new(Sharing::FedAvgLora))
        .names()
        .map(String::from)
        .collect();
    assert_eq!(names, ["fc.lora_a", "fc.lora_b"]);
}

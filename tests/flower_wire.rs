//! Bytes on the wire per round and node for each experiment's shared tensors under pLoRA (B
//! only): the train reply a node pushes (every object of the message) in float32 and float16,
//! for the quick start's task, the CIFAR-10 experiment's classifier adapters and new head, and
//! Florence-2-base's default targets (the last decoder layer's q/v). Printed with
//! `cargo test --test flower_wire -- --nocapture` (BENCHMARKS.md's table).

use burn::backend::Flex;
use fedvlm::experiments::cifar10::{Cifar10Config, HEAD};
use fedvlm::federated::{Payload, ShareSpec, TensorValues, collect_shared};
use fedvlm::flower::proto;
use fedvlm::flower::records::{ArrayRecord, MetricRecord, NpyDtype, RecordDict, Value};
use fedvlm::flower::{encode_reply, object_id};
use fedvlm::models::{MobileNetV3, MobileNetV3Config};
use fedvlm::synthetic::Quickstart;
use fedvlm::{LoraConfig, Sharing};

type B = Flex;

/// Bytes of every object of a train reply carrying `payload` as `dtype`.
fn reply_bytes(payload: &Payload, dtype: NpyDtype) -> (usize, usize) {
    let content = RecordDict::new()
        .with_arrays("arrays", ArrayRecord::from_payload(payload, dtype))
        .with_metrics(
            "metrics",
            MetricRecord::default()
                .with("num-examples", Value::Sint64(100))
                .with("train-loss", Value::Double(0.5)),
        );
    let metadata = proto::Metadata {
        run_id: 1,
        message_type: "train".into(),
        group_id: "1".into(),
        ttl: 3600.0,
        created_at: 1.0,
        ..Default::default()
    };
    let (_, encoded) = encode_reply(metadata, Ok(&content)).expect("encode");
    for (id, bytes) in &encoded.objects {
        assert_eq!(&object_id(bytes), id);
    }
    let total = encoded.objects.iter().map(|(_, b)| b.len()).sum();
    (encoded.objects.len(), total)
}

fn florence2_base_default_targets(rank: usize) -> Payload {
    // The last decoder layer's self-attention q_proj and v_proj: B is [d_model, rank].
    let d_model = 768;
    let mut payload = Payload::default();
    for (i, proj) in ["q_proj", "v_proj"].into_iter().enumerate() {
        let name = format!("language_model.model.decoder.layers.5.self_attn.{proj}.lora_b");
        // Distinct values: identical arrays would share their chunk object.
        let values = (0..d_model * rank)
            .map(|j| (j * (i + 2)) as f32 * 1e-3)
            .collect();
        let tensor = TensorValues::new(&name, vec![d_model, rank], values).unwrap();
        payload.tensors.insert(name, tensor);
    }
    payload
}

#[test]
fn wire_bytes_per_round_and_node() {
    let device = Default::default();
    let plora = ShareSpec::new(Sharing::PLora);

    let quickstart = Quickstart::new(3);
    let synthetic = collect_shared(&quickstart.model::<B>(0, &device).unwrap(), &plora);

    let cifar = Cifar10Config::default();
    let model = MobileNetV3::<B>::new(&MobileNetV3Config::small(10), &device)
        .with_adapters(&cifar.lora, cifar.targets, 7)
        .unwrap();
    let cifar_payload = collect_shared(&model, &plora.clone().also_share(HEAD));

    let florence = florence2_base_default_targets(LoraConfig::paper().rank);

    println!("| payload | values | f32 reply (objects, bytes) | f16 reply (objects, bytes) |");
    for (label, payload) in [
        ("synthetic (quick start)", &synthetic),
        ("CIFAR-10 classifier adapters + head", &cifar_payload),
        ("Florence-2-base default targets", &florence),
    ] {
        assert!(payload.names().all(|n| !n.ends_with("lora_a")), "{label}");
        let values = payload.num_values();
        let (n32, b32) = reply_bytes(payload, NpyDtype::F32);
        let (n16, b16) = reply_bytes(payload, NpyDtype::F16);
        println!("| {label} | {values} | {n32}, {b32} | {n16}, {b16} |");
        // Data dominates: headers and ids cost a few hundred bytes per array.
        let arrays = payload.tensors.len();
        assert!(
            b32 >= 4 * values && b32 <= 4 * values + 1200 * arrays + 1200,
            "{label} f32"
        );
        assert!(
            b16 >= 2 * values && b16 <= 2 * values + 1200 * arrays + 1200,
            "{label} f16"
        );
    }
}

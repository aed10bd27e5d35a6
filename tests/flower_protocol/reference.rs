//! Messages made by flwr's own classes: decoded, and re-encoded to the same bytes and ids.

use fedvlm::flower::objects::parse_object;
use fedvlm::flower::proto;
use fedvlm::flower::{
    ArrayRecord, CHUNK_SIZE, ConfigRecord, MetricRecord, NdArray, NpyDtype, RecordDict, Value,
    decode_message_content, encode_reply,
};
use prost::Message;
use serde_json::Value as Json;

use super::{b64, object_map, reference, reference_objects};

/// What `scripts/flower_reference_objects.py` put into its train message.
pub fn expected_content() -> RecordDict {
    let lora_b: Vec<f32> = (0..32).map(|i| i as f32 / 7.0).collect();
    let arrays = ArrayRecord::default()
        .with("lora_b", NdArray::new(NpyDtype::F32, vec![4, 8], lora_b).unwrap())
        .with(
            "half",
            NdArray::new(NpyDtype::F16, vec![2, 3], vec![0.5, -1.25, 3.0, 65504.0, half::f16::from_f32(1e-3).to_f32(), 0.0]).unwrap(),
        )
        .with("scalar", NdArray::new(NpyDtype::F32, vec![], vec![2.5]).unwrap())
        .with("empty", NdArray::new(NpyDtype::F32, vec![0, 3], vec![]).unwrap())
        .with("wide", NdArray::new(NpyDtype::F64, vec![5], vec![-1.0, -0.5, 0.0, 0.5, 1.0]).unwrap());
    let config = ConfigRecord::default()
        .with("lr", Value::Double(0.1))
        .with("server-round", Value::Sint64(2))
        .with("name", Value::String("héllo \"x\"".into()))
        .with("flag", Value::Bool(true))
        .with("blob", Value::Bytes(vec![0, 1]))
        .with("floats", Value::DoubleList(vec![0.5, 1.5]))
        .with("ints", Value::Sint64List(vec![1, -2]))
        .with("bools", Value::BoolList(vec![true, false]))
        .with("strs", Value::StringList(vec!["a".into(), "b".into()]))
        .with("blobs", Value::BytesList(vec![b"x".to_vec(), vec![]]));
    let metrics = MetricRecord::default()
        .with("num-examples", Value::Sint64(40))
        .with("loss", Value::Double(0.25))
        .with("accs", Value::DoubleList(vec![0.5, 0.75]))
        .with("counts", Value::Sint64List(vec![3, 4]));
    RecordDict::new()
        .with_arrays("arrays", arrays)
        .with_config("config", config)
        .with_metrics("metrics", metrics)
        .with_config("copy", ConfigRecord::default().with("lr", Value::Double(0.1)))
}

fn tree_json(tree: &proto::ObjectTree) -> Json {
    let children: Vec<Json> = tree.children.iter().map(tree_json).collect();
    serde_json::json!({"id": tree.object_id, "children": children})
}

#[test]
fn flwr_message_decodes_into_its_record_dict() {
    let r = reference();
    let message = &r["message"];
    let objects = object_map(&reference_objects(message));
    let id = message["message_id"].as_str().unwrap();
    let content = decode_message_content(id, &objects).unwrap();
    assert_eq!(content, expected_content());
    assert_eq!(content.arrays("arrays").unwrap().get("lora_b").unwrap().shape, [4, 8]);
    assert!(content.config("arrays").is_none());
}

#[test]
fn reply_encodes_to_flwr_ids_objects_and_tree() {
    let r = reference();
    let message = &r["message"];
    let metadata = proto::Metadata::decode(b64(&message["metadata"]).as_slice()).unwrap();
    let (pushed, encoded) = encode_reply(metadata.clone(), Ok(&expected_content())).unwrap();
    assert_eq!(encoded.message_id, message["message_id"].as_str().unwrap());
    // Same objects, same bytes, same post-order.
    assert_eq!(encoded.objects, reference_objects(message));
    assert_eq!(tree_json(&encoded.tree), message["tree"]);
    let pushed_md = pushed.metadata.unwrap();
    assert_eq!(pushed_md.message_id, encoded.message_id);
    assert_eq!(pushed_md.created_at, metadata.created_at);
    assert_eq!(pushed.content, Some(proto::RecordDict::default()));
    assert!(pushed.error.is_none());
    // Post-order: every child comes before its parent.
    for (i, (_, bytes)) in encoded.objects.iter().enumerate() {
        for child in parse_object(bytes).unwrap().children {
            let at = encoded.objects.iter().position(|(id, _)| id == child).unwrap();
            assert!(at < i);
        }
    }
}

#[test]
fn error_reply_is_one_message_object_like_flwr() {
    let r = reference();
    let message = &r["error_message"];
    let metadata = proto::Metadata::decode(b64(&message["metadata"]).as_slice()).unwrap();
    let error = proto::Error { code: 2, reason: "<class 'RuntimeError'>:<'asked to fail'>".into() };
    let (pushed, encoded) = encode_reply(metadata, Err(&error)).unwrap();
    assert_eq!(encoded.message_id, message["message_id"].as_str().unwrap());
    assert_eq!(encoded.objects, reference_objects(message));
    assert!(encoded.tree.children.is_empty());
    assert_eq!(pushed.error, Some(error));
    assert_eq!(pushed.content, None);
}

#[test]
fn arrays_over_5_mib_split_into_chunks_like_flwr() {
    let r = reference();
    for case in r["chunked"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let len = case["len"].as_u64().unwrap() as usize;
        let values: Vec<f32> = match name {
            "ramp" => (0..len).map(|i| i as f32).collect(),
            _ => vec![0.0; len],
        };
        let array = NdArray::new(NpyDtype::F32, vec![len], values).unwrap();
        let content = RecordDict::new().with_arrays("arrays", ArrayRecord::default().with(name, array.clone()));
        let metadata = proto::Metadata { message_type: "train".into(), ..Default::default() };
        let (_, encoded) = encode_reply(metadata, Ok(&content)).unwrap();
        let (array_id, array_object) = encoded.objects.iter().find(|(_, b)| b.starts_with(b"Array ")).unwrap();
        assert_eq!(array_id, case["array_id"].as_str().unwrap(), "{name}");
        assert_eq!(array_object, &b64(&case["array_object"]), "{name}");
        let chunk_ids: Vec<&str> = case["chunk_ids"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(parse_object(array_object).unwrap().children, chunk_ids);
        let chunks: Vec<&Vec<u8>> = encoded.objects.iter().filter(|(_, b)| b.starts_with(b"ArrayChunk")).map(|(_, b)| b).collect();
        assert_eq!(chunks.len(), chunk_ids.len(), "{name}: identical chunks once");
        assert!(chunks.len() >= 2);
        assert!(chunks.iter().all(|c| parse_object(c).unwrap().body.len() <= CHUNK_SIZE));
        let npy_len: usize = case["npy_len"].as_u64().unwrap() as usize;
        let slices = npy_len.div_ceil(CHUNK_SIZE);
        assert!(slices > chunks.len() || name == "ramp", "{name}: a repeated chunk");
        // And back.
        let decoded = decode_message_content(&encoded.message_id, &super::object_map(&encoded.objects)).unwrap();
        assert_eq!(decoded.arrays("arrays").unwrap().get(name), Some(&array));
    }
}

#[test]
fn payload_conversions_keep_names_shapes_and_values() {
    let record = expected_content().arrays("arrays").unwrap().clone();
    let payload = record.to_payload().unwrap();
    assert_eq!(payload.tensors["lora_b"].shape, [4, 8]);
    assert_eq!(payload.tensors["scalar"].values, [2.5]);
    let back = ArrayRecord::from_payload(&payload, NpyDtype::F16);
    let names: Vec<&str> = back.arrays.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["empty", "half", "lora_b", "scalar", "wide"]);
    assert!(back.arrays.iter().all(|(_, a)| a.dtype == NpyDtype::F16));
    // Shape and values that disagree are a typed error.
    let bad = ArrayRecord::default().with("x", NdArray { dtype: NpyDtype::F32, shape: vec![2, 2], values: vec![1.0] });
    assert!(matches!(bad.to_payload(), Err(fedvlm::flower::FlowerError::Array { .. })));
    let twice = ArrayRecord::default()
        .with("x", NdArray::new(NpyDtype::F32, vec![1], vec![1.0]).unwrap())
        .with("x", NdArray::new(NpyDtype::F32, vec![1], vec![2.0]).unwrap());
    assert!(twice.to_payload().is_err());
}

/// Bytes on the wire for a train reply with a 4x512 `lora_b` (f32 and f16): the protobuf request
/// bodies of push-messages and every push-object. Printed for the notes; checked loosely.
#[test]
fn wire_bytes_of_a_4x512_reply() {
    let mut sizes = Vec::new();
    for dtype in [NpyDtype::F32, NpyDtype::F16] {
        let values: Vec<f32> = (0..2048).map(|i| (i as f32 * 0.37).sin()).collect();
        let content = RecordDict::new()
            .with_arrays("arrays", ArrayRecord::default().with("lora_b", NdArray::new(dtype, vec![4, 512], values).unwrap()))
            .with_metrics("metrics", MetricRecord::default().with("num-examples", Value::Sint64(10)));
        let metadata = proto::Metadata {
            run_id: 1_525_057_076_187_606_114,
            src_node_id: 8_896_973_510_274_497_631,
            dst_node_id: 1,
            reply_to_message_id: "65894f79d1da58369da703490bd50029203c959eb114088a78a659de8a1aa580".into(),
            group_id: "1".into(),
            ttl: 43_196.5,
            message_type: "train".into(),
            created_at: 1_796_394_973.005_565,
            src_task_id: None,
            dst_task_id: Some(3_791_920_069_060_010_341),
            message_id: String::new(),
        };
        let (message, encoded) = encode_reply(metadata.clone(), Ok(&content)).unwrap();
        let node = Some(proto::Node { node_id: metadata.src_node_id });
        let push = proto::PushMessagesRequest {
            node,
            messages_list: vec![message],
            message_object_trees: vec![encoded.tree.clone()],
            clientapp_runtime_list: vec![0.01],
        };
        let objects: usize = encoded
            .objects
            .iter()
            .map(|(id, bytes)| {
                proto::PushObjectRequest {
                    node,
                    run_id: metadata.run_id,
                    object_id: id.clone(),
                    object_content: bytes.clone(),
                    session_id: "afb841ed-2730-4856-a56f-13e457577597".into(),
                }
                .encoded_len()
            })
            .sum();
        let total = push.encoded_len() + objects;
        eprintln!(
            "4x512 {dtype:?} reply: {} objects, push-messages {} B + push-object {} B = {total} B (raw data {} B)",
            encoded.objects.len(),
            push.encoded_len(),
            objects,
            2048 * dtype.size()
        );
        sizes.push(total);
    }
    assert!(sizes[0] > 2048 * 4 && sizes[0] < 2048 * 4 + 4096, "{sizes:?}");
    assert!(sizes[1] > 2048 * 2 && sizes[1] < 2048 * 2 + 4096, "{sizes:?}");
}

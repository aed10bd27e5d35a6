//! The recorded bodies of a stock 2-round FedAvg run.

use std::collections::HashMap;

use fedvlm::flower::objects::{make_object, parse_object, tree_ids};
use fedvlm::flower::proto;
use fedvlm::flower::{ConfigRecord, FlowerError, MetricRecord, Value, decode_message_content, object_id};
use prost::Message;

use super::fixture_dir;

/// Every `(index, rpc, kind, bytes)` of the recorded run, in order.
fn recorded() -> Vec<(u32, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixture_dir().join("run")).expect("run/") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let (index, rest) = name.split_once('_').expect("NNNN_rpc.kind.bin");
        let mut parts = rest.split('.');
        let (rpc, kind) = (parts.next().unwrap(), parts.next().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        out.push((index.parse().unwrap(), rpc.to_string(), kind.to_string(), bytes));
    }
    out.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    assert!(out.len() > 80, "the recorded run has {} files", out.len());
    out
}

fn roundtrip<T: Message + Default>(bytes: &[u8], strict: bool) -> Result<(), prost::DecodeError> {
    let decoded = T::decode(bytes)?;
    if strict {
        assert_eq!(decoded.encode_to_vec(), bytes, "{}", std::any::type_name::<T>());
    }
    Ok(())
}

/// Decodes `bytes` as the request or response of `rpc` and checks that prost re-encodes it
/// byte for byte when `strict` (flwr serializes deterministically; so does prost with BTreeMaps).
pub fn decode_as(rpc: &str, kind: &str, bytes: &[u8], strict: bool) -> Result<(), prost::DecodeError> {
    macro_rules! pick {
        ($req:ty, $resp:ty) => {
            if kind == "req" { roundtrip::<$req>(bytes, strict) } else { roundtrip::<$resp>(bytes, strict) }
        };
    }
    use proto::*;
    match rpc {
        "register-node" => pick!(RegisterNodeFleetRequest, RegisterNodeFleetResponse),
        "activate-node" => pick!(ActivateNodeRequest, ActivateNodeResponse),
        "deactivate-node" => pick!(DeactivateNodeRequest, DeactivateNodeResponse),
        "unregister-node" => pick!(UnregisterNodeFleetRequest, UnregisterNodeFleetResponse),
        "send-node-heartbeat" => pick!(SendNodeHeartbeatRequest, SendNodeHeartbeatResponse),
        "pull-messages" => pick!(PullMessagesRequest, PullMessagesResponse),
        "push-messages" => pick!(PushMessagesRequest, PushMessagesResponse),
        "get-run" => pick!(GetRunRequest, GetRunResponse),
        "get-fab" => pick!(GetFabRequest, GetFabResponse),
        "push-object" => pick!(PushObjectRequest, PushObjectResponse),
        "pull-object" => pick!(PullObjectRequest, PullObjectResponse),
        "confirm-message-received" => {
            pick!(ConfirmMessageReceivedRequest, ConfirmMessageReceivedResponse)
        }
        other => panic!("unknown rpc {other}"),
    }
}

#[test]
fn every_recorded_body_decodes_and_requests_reencode_byte_for_byte() {
    // Requests are what the node sends: prost must write them exactly as flwr does. Responses
    // need only decode (flwr writes a map entry's default value, prost leaves it out).
    for (index, rpc, kind, bytes) in recorded() {
        decode_as(&rpc, &kind, &bytes, kind == "req").unwrap_or_else(|e| panic!("{index} {rpc} {kind}: {e}"));
    }
}

fn get<T: Message + Default>(index: u32, rpc: &str, kind: &str) -> T {
    let path = fixture_dir().join(format!("run/{index:04}_{rpc}.{kind}.bin"));
    T::decode(std::fs::read(&path).unwrap().as_slice()).unwrap()
}

#[test]
fn requests_built_from_fields_match_flwr() {
    let node_id = 8_896_973_510_274_497_631;
    let node = Some(proto::Node { node_id });
    let register: proto::RegisterNodeFleetRequest = get(1, "register-node", "req");
    let activate = proto::ActivateNodeRequest {
        public_key: register.public_key.clone(),
        heartbeat_interval: 30.0,
    };
    let read = |i: u32, rpc: &str| std::fs::read(fixture_dir().join(format!("run/{i:04}_{rpc}.req.bin"))).unwrap();
    assert_eq!(activate.encode_to_vec(), read(2, "activate-node"));
    let heartbeat = proto::SendNodeHeartbeatRequest { node, heartbeat_interval: 30.0 };
    assert_eq!(heartbeat.encode_to_vec(), read(3, "send-node-heartbeat"));
    let pull = proto::PullMessagesRequest { node, message_ids: vec![] };
    assert_eq!(pull.encode_to_vec(), read(4, "pull-messages"));
    let run_id = 1_525_057_076_187_606_114;
    assert_eq!(proto::GetRunRequest { node, run_id }.encode_to_vec(), read(10, "get-run"));
    let object_id = "94c268a392a9b211230c7c7af92d46a9a1dbe896e48750305c86be03e9f1c31c".to_string();
    let pull_object = proto::PullObjectRequest { node, run_id, object_id };
    assert_eq!(pull_object.encode_to_vec(), read(14, "pull-object"));
    let message_object_id =
        "65894f79d1da58369da703490bd50029203c959eb114088a78a659de8a1aa580".to_string();
    let confirm = proto::ConfirmMessageReceivedRequest { node, run_id, message_object_id };
    assert_eq!(confirm.encode_to_vec(), read(19, "confirm-message-received"));
}

#[test]
fn pulled_and_pushed_objects_hash_to_their_ids() {
    let mut checked = 0;
    for (index, rpc, kind, bytes) in recorded() {
        if rpc == "pull-object" && kind == "resp" {
            let req: proto::PullObjectRequest = get(index, "pull-object", "req");
            let resp = proto::PullObjectResponse::decode(bytes.as_slice()).unwrap();
            assert!(resp.object_found && resp.object_available);
            assert_eq!(object_id(&resp.object_content), req.object_id, "{index}");
            parse_object(&resp.object_content).unwrap();
            checked += 1;
        }
        if rpc == "push-object" && kind == "req" {
            let req = proto::PushObjectRequest::decode(bytes.as_slice()).unwrap();
            assert_eq!(object_id(&req.object_content), req.object_id, "{index}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} objects checked");
}

/// The objects pulled for the message of pull-messages `index`, by id.
fn pulled_objects(first: u32, last: u32) -> HashMap<String, Vec<u8>> {
    let mut objects = HashMap::new();
    for i in first..=last {
        let path = fixture_dir().join(format!("run/{i:04}_pull-object.resp.bin"));
        if let Ok(bytes) = std::fs::read(&path) {
            let resp = proto::PullObjectResponse::decode(bytes.as_slice()).unwrap();
            objects.insert(object_id(&resp.object_content), resp.object_content);
        }
    }
    objects
}

#[test]
fn recorded_train_instruction_decodes_up_to_its_missing_chunks() {
    let pulled: proto::PullMessagesResponse = get(9, "pull-messages", "resp");
    let metadata = pulled.messages_list[0].metadata.clone().unwrap();
    let tree = &pulled.message_object_trees[0];
    assert_eq!(tree.object_id, metadata.message_id);
    assert_eq!(metadata.message_type, "train");
    let ids = tree_ids(tree);
    assert_eq!(ids[0], metadata.message_id, "parents first");
    let objects = pulled_objects(12, 18);
    // The Message object's body is the metadata without its id.
    let message = parse_object(&objects[&metadata.message_id]).unwrap();
    let body = proto::Message::decode(message.body).unwrap();
    let mut expected = metadata.clone();
    expected.message_id = String::new();
    assert_eq!(body.metadata, Some(expected));
    // The ConfigRecord.
    let config_id = ids.iter().find(|id| objects.get(*id).is_some_and(|o| o.starts_with(b"ConfigRecord"))).unwrap();
    let config = parse_object(&objects[config_id]).unwrap();
    let config = ConfigRecord::from_proto(proto::ConfigRecord::decode(config.body).unwrap()).unwrap();
    assert_eq!(config.get("lr"), Some(&Value::Double(0.1)));
    assert_eq!(config.get("server-round"), Some(&Value::Sint64(1)));
    // The 6.4 MB chunks were too big to keep: a typed error names one.
    match decode_message_content(&metadata.message_id, &objects) {
        Err(FlowerError::MissingObject(id)) => assert!(ids.contains(&id)),
        other => panic!("expected a missing chunk, got {other:?}"),
    }
}

#[test]
fn recorded_reply_objects_reencode_byte_for_byte() {
    let push: proto::PushMessagesRequest = get(20, "push-messages", "req");
    let reply = &push.messages_list[0];
    let metadata = reply.metadata.clone().unwrap();
    let mut objects = HashMap::new();
    for i in 23..=27 {
        let req: proto::PushObjectRequest = get(i, "push-object", "req");
        objects.insert(req.object_id, req.object_content);
    }
    // The Message object: metadata without message_id, no content, child = the RecordDict.
    let message = parse_object(&objects[&metadata.message_id]).unwrap();
    let children: Vec<String> = message.children.iter().map(|c| c.to_string()).collect();
    let mut body_metadata = metadata.clone();
    body_metadata.message_id = String::new();
    let body = proto::Message { metadata: Some(body_metadata), content: None, error: None };
    let rebuilt = make_object("Message", &children, &body.encode_to_vec());
    assert_eq!(object_id(&rebuilt), metadata.message_id);
    // The MetricRecord: decoded and encoded again.
    let (id, bytes) = objects.iter().find(|(_, b)| b.starts_with(b"MetricRecord")).unwrap();
    let parsed = parse_object(bytes).unwrap();
    let metrics = MetricRecord::from_proto(proto::MetricRecord::decode(parsed.body).unwrap()).unwrap();
    assert_eq!(metrics.get("num-examples"), Some(&Value::Sint64(20)));
    let rebuilt = make_object("MetricRecord", &[], &metrics.to_proto().unwrap().encode_to_vec());
    assert_eq!(&object_id(&rebuilt), id);
    // The reply carries an empty content besides its metadata, as flwr's node sends it.
    assert_eq!(reply.content, Some(proto::RecordDict::default()));
    assert_eq!(push.clientapp_runtime_list.len(), 1);
}

//! A scripted fake SuperLink on loopback (no Python): retries of transient failures, typed 4xx
//! errors, expired instructions, objects that do not match their ids, a clean leave.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fedvlm::flower::proto;
use fedvlm::flower::{
    ArrayRecord, FlowerError, FlowerNode, Instruction, NdArray, NodeConfig, NodeHandler, NpyDtype,
    RecordDict, ReplyError, encode_reply, error_code,
};
use prost::Message;

/// What the fake answers: status and body, or `None` to drop the connection.
type Answer = Option<(u16, Vec<u8>)>;

/// Serves requests on a free port with `script(rpc, body)` until the test ends.
fn serve(script: impl FnMut(&str, &[u8]) -> Answer + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(Mutex::new(script));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let script = Arc::clone(&script);
            std::thread::spawn(move || connection(stream, script));
        }
    });
    port
}

fn connection(stream: TcpStream, script: Arc<Mutex<impl FnMut(&str, &[u8]) -> Answer>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let rpc = line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let mut length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let answer = (script.lock().unwrap())(&rpc, &body);
        let Some((status, body)) = answer else { return };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/protobuf\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).unwrap();
        writer.write_all(&body).unwrap();
    }
}

fn ok(m: impl Message) -> Answer {
    Some((200, m.encode_to_vec()))
}

fn config(port: u16) -> NodeConfig {
    let mut config = NodeConfig::insecure(format!("127.0.0.1:{port}"));
    config.retry_backoff = Duration::from_millis(10);
    config.max_retries = 3;
    config.poll_interval = Duration::from_millis(10);
    config.request_timeout = Duration::from_secs(5);
    config
}

/// An instruction: pull-messages answer plus its objects.
fn instruction(
    created_ago: f64,
    ttl: f64,
    value: f32,
) -> (proto::PullMessagesResponse, HashMap<String, Vec<u8>>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let metadata = proto::Metadata {
        run_id: 5,
        src_node_id: 1,
        dst_node_id: 42,
        ttl,
        message_type: "train".into(),
        created_at: now - created_ago,
        ..Default::default()
    };
    let b = NdArray::new(NpyDtype::F32, vec![2, 2], vec![value; 4]).unwrap();
    let content = RecordDict::new().with_arrays("arrays", ArrayRecord::default().with("lora_b", b));
    let (message, encoded) = encode_reply(metadata, Ok(&content)).unwrap();
    let response = proto::PullMessagesResponse {
        reconnect: None,
        messages_list: vec![message],
        message_object_trees: vec![encoded.tree],
    };
    (response, encoded.objects.into_iter().collect())
}

struct Echo;

impl NodeHandler for Echo {
    fn handle(&mut self, ins: &Instruction) -> Result<RecordDict, ReplyError> {
        Ok(ins.content.clone())
    }
}

#[test]
fn retries_expired_instructions_bad_objects_and_leaving() {
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let (expired, mut objects) = instruction(100.0, 10.0, 1.0);
    let (fresh, fresh_objects) = instruction(0.0, 60.0, 2.0);
    objects.extend(fresh_objects);
    // One object of the fresh message is served with a flipped byte.
    let fresh_id = fresh.message_object_trees[0].object_id.clone();
    let bad_id = fresh.message_object_trees[0].children[0].object_id.clone();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let (stop2, log2) = (Arc::clone(&stop), Arc::clone(&log));
    let pushed_out: Arc<Mutex<Vec<proto::PushMessagesRequest>>> = Arc::default();
    let pushed_out2 = Arc::clone(&pushed_out);
    let port = serve(move |rpc, body| {
        let n = {
            let c = counts.entry(rpc.to_string()).or_default();
            *c += 1;
            *c
        };
        log2.lock().unwrap().push(rpc.to_string());
        match rpc {
            "register-node" if n <= 2 => Some((503, b"{\"code\": 14}".to_vec())),
            "register-node" => ok(proto::RegisterNodeFleetResponse { node_id: 42 }),
            "activate-node" if n == 1 => None,
            "activate-node" => ok(proto::ActivateNodeResponse { node_id: 42 }),
            "pull-messages" if n == 1 => ok(expired.clone()),
            "pull-messages" if n == 2 => ok(fresh.clone()),
            "pull-messages" if n == 3 => Some((502, vec![])),
            "pull-messages" => ok(proto::PullMessagesResponse::default()),
            "get-run" => ok(proto::GetRunResponse {
                run: Some(proto::Run {
                    run_id: 5,
                    ..Default::default()
                }),
            }),
            // The first object asked for is not available yet: the node must ask again.
            "pull-object" if n == 1 => ok(proto::PullObjectResponse {
                object_found: true,
                object_available: false,
                object_content: vec![],
            }),
            "pull-object" => {
                let req = proto::PullObjectRequest::decode(body).unwrap();
                let mut content = objects.get(&req.object_id).cloned().unwrap_or_default();
                if req.object_id == bad_id {
                    content[0] ^= 1;
                }
                ok(proto::PullObjectResponse {
                    object_found: true,
                    object_available: true,
                    object_content: content,
                })
            }
            "confirm-message-received" => ok(proto::ConfirmMessageReceivedResponse::default()),
            "push-messages" => {
                let req = proto::PushMessagesRequest::decode(body).unwrap();
                let objects_to_push =
                    fedvlm::flower::objects::tree_ids(&req.message_object_trees[0]);
                pushed_out2.lock().unwrap().push(req);
                ok(proto::PushMessagesResponse {
                    objects_to_push,
                    session_id: "s".into(),
                    ..Default::default()
                })
            }
            "push-object" => {
                let req = proto::PushObjectRequest::decode(body).unwrap();
                assert_eq!(req.session_id, "s");
                assert_eq!(
                    fedvlm::flower::object_id(&req.object_content),
                    req.object_id
                );
                stop2.store(true, Ordering::Relaxed);
                ok(proto::PushObjectResponse { stored: true })
            }
            "deactivate-node" => ok(proto::DeactivateNodeResponse::default()),
            "unregister-node" => ok(proto::UnregisterNodeFleetResponse::default()),
            _ => Some((404, b"{}".to_vec())),
        }
    });
    let mut node = FlowerNode::connect(config(port)).expect("retried into the federation");
    assert_eq!(node.node_id(), 42);
    node.run(&mut Echo, &stop).unwrap();
    node.shutdown().unwrap();
    let log = log.lock().unwrap().clone();
    let count = |rpc: &str| log.iter().filter(|r| *r == rpc).count();
    assert_eq!(count("register-node"), 3, "two 503s, then 200: {log:?}");
    assert_eq!(
        count("activate-node"),
        2,
        "a dropped connection, then 200: {log:?}"
    );
    assert_eq!(count("get-run"), 1, "once per run: {log:?}");
    // 5 objects of the expired message (one asked twice), 2 of the fresh one (the 2nd is bad).
    assert_eq!(count("pull-object"), 5 + 1 + 2, "{log:?}");
    assert_eq!(
        count("confirm-message-received"),
        1,
        "only the expired message is confirmed: {log:?}"
    );
    // The expired instruction got no reply; the bad object became an error reply.
    let pushed = pushed_out.lock().unwrap().clone();
    assert_eq!(pushed.len(), 1, "{log:?}");
    let reply = &pushed[0].messages_list[0];
    let error = reply.error.as_ref().expect("an error reply");
    assert_eq!(error.code, error_code::MESSAGE_UNAVAILABLE);
    assert!(reply.content.is_none());
    let metadata = reply.metadata.as_ref().unwrap();
    assert_eq!(metadata.reply_to_message_id, fresh_id);
    assert_eq!((metadata.src_node_id, metadata.dst_node_id), (42, 1));
    assert!(metadata.ttl > 0.0 && metadata.ttl <= 60.0);
    assert_eq!(
        &log[log.len() - 2..],
        ["deactivate-node", "unregister-node"]
    );
}

#[test]
fn client_errors_are_typed_and_not_retried() {
    for (status, auth) in [(400u16, false), (401, true), (412, true)] {
        let calls = Arc::new(Mutex::new(0));
        let calls2 = Arc::clone(&calls);
        let port = serve(move |rpc, _| {
            if rpc == "register-node" {
                *calls2.lock().unwrap() += 1;
            }
            Some((status, b"{\"code\": 3, \"message\": \"no\"}".to_vec()))
        });
        match FlowerNode::connect(config(port)) {
            Err(FlowerError::Auth { status: s, .. }) if auth => assert_eq!(s, status),
            Err(FlowerError::Http {
                status: s, body, ..
            }) if !auth => {
                assert_eq!(s, status);
                assert!(body.contains("no"));
            }
            other => panic!("{status}: {:?}", other.map(|n| n.node_id())),
        }
        assert_eq!(*calls.lock().unwrap(), 1, "{status} is not retried");
    }
    // Connection refused: retried, then a transport error.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert!(matches!(
        FlowerNode::connect(config(port)),
        Err(FlowerError::Transport { .. })
    ));
}

#[test]
fn garbage_responses_are_decode_errors() {
    let port = serve(|_, _| Some((200, vec![0xff, 0xff, 0xff])));
    assert!(matches!(
        FlowerNode::connect(config(port)),
        Err(FlowerError::Decode { .. })
    ));
}

#[test]
fn heartbeats_go_out_and_stop_on_shutdown() {
    let beats = Arc::new(Mutex::new(Vec::<f64>::new()));
    let beats2 = Arc::clone(&beats);
    let port = serve(move |rpc, body| match rpc {
        "register-node" => ok(proto::RegisterNodeFleetResponse { node_id: 7 }),
        "activate-node" => ok(proto::ActivateNodeResponse { node_id: 7 }),
        "send-node-heartbeat" => {
            let req = proto::SendNodeHeartbeatRequest::decode(body).unwrap();
            assert_eq!(req.node.unwrap().node_id, 7);
            beats2.lock().unwrap().push(req.heartbeat_interval);
            ok(proto::SendNodeHeartbeatResponse { success: true })
        }
        "deactivate-node" => ok(proto::DeactivateNodeResponse::default()),
        "unregister-node" => ok(proto::UnregisterNodeFleetResponse::default()),
        _ => Some((404, vec![])),
    });
    let mut config = config(port);
    config.heartbeat_interval = 1.25; // one heartbeat a second
    let node = FlowerNode::connect(config).unwrap();
    std::thread::sleep(Duration::from_millis(2_600));
    node.shutdown().unwrap();
    let sent = beats.lock().unwrap().clone();
    assert!(
        sent.len() >= 2 && sent.iter().all(|i| *i == 1.25),
        "{sent:?}"
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        beats.lock().unwrap().len(),
        sent.len(),
        "no heartbeat after shutdown"
    );
}

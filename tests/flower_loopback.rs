//! End to end on loopback: a real `flower-superlink` (flwr 1.42 from PyPI, see
//! `tests/common/flower.rs`), two native Rust `FlowerNode`s in threads, and `flwr run` of the
//! ServerApp in `tests/fixtures/flower/app/`: 2 rounds of stock FedAvg, then error replies.
#![cfg(all(feature = "flower", unix))]

#[path = "common/flower.rs"]
mod flower_common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use fedvlm::flower::{
    ArrayRecord, FlowerNode, Instruction, MessageStats, MetricRecord, NdArray, NodeConfig,
    NodeHandler, RecordDict, ReplyError, Value,
};
use flower_common::{Processes, flwr_venv, free_port, venv_command, wait_for_port, write_flwr_home};

/// mini_supernode's toy client: `lora_b + 0.1 * (partition + 1)`, weight `10 * (partition + 1)`;
/// `query` fails when its config asks to.
struct Toy {
    partition: usize,
    stats: Vec<MessageStats>,
}

impl NodeHandler for Toy {
    fn handle(&mut self, ins: &Instruction) -> Result<RecordDict, ReplyError> {
        let p = self.partition;
        match ins.message_type.as_str() {
            "train" => {
                let b = ins
                    .content
                    .arrays("arrays")
                    .and_then(|r| r.get("lora_b"))
                    .ok_or_else(|| ReplyError::new("no arrays.lora_b"))?;
                let values = b.values.iter().map(|v| v + 0.1 * (p + 1) as f32).collect();
                let array = NdArray::new(b.dtype, b.shape.clone(), values)
                    .map_err(|e| ReplyError::new(e.to_string()))?;
                Ok(RecordDict::new()
                    .with_arrays("arrays", ArrayRecord::default().with("lora_b", array))
                    .with_metrics("metrics", MetricRecord::default().with("num-examples", Value::Sint64(10 * (p as i64 + 1)))))
            }
            "evaluate" => Ok(RecordDict::new().with_metrics(
                "metrics",
                MetricRecord::default()
                    .with("num-examples", Value::Sint64(5))
                    .with("eval_loss", Value::Double(p as f64)),
            )),
            "query" => {
                let fail = ins.content.config("config").and_then(|c| c.get("fail"));
                if fail == Some(&Value::Bool(true)) {
                    return Err(ReplyError::new("asked to fail"));
                }
                Ok(RecordDict::new().with_metrics("metrics", MetricRecord::default().with("pong", Value::Sint64(1))))
            }
            other => Err(ReplyError::new(format!("unknown message type {other}"))),
        }
    }

    fn after_reply(&mut self, stats: &MessageStats) {
        self.stats.push(stats.clone());
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn two_rust_nodes_run_stock_fedavg_and_send_error_replies() {
    let venv = flwr_venv();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("flwrhome");
    let port = free_port();
    write_flwr_home(&home, port, None);
    let app = work.path().join("app");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flower/app"), &app);

    let mut procs = Processes::default();
    let mut superlink = venv_command(&venv, "flower-superlink", &home);
    superlink
        .args(["--insecure", "--disable-runtime-dependency-installation", "--port"])
        .arg(port.to_string())
        .current_dir(work.path());
    procs.spawn("superlink", superlink, &work.path().join("superlink.log"));
    wait_for_port(port, Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let nodes: Vec<_> = (0..2)
        .map(|partition| {
            let (stop, ready) = (Arc::clone(&stop), ready_tx.clone());
            std::thread::spawn(move || -> Result<Vec<MessageStats>, String> {
                let mut config = NodeConfig::insecure(format!("127.0.0.1:{port}"));
                config.poll_interval = Duration::from_millis(200);
                config.request_timeout = Duration::from_secs(30);
                let mut node = FlowerNode::connect(config).map_err(|e| e.to_string())?;
                ready.send(node.node_id()).unwrap();
                let mut toy = Toy { partition, stats: Vec::new() };
                node.run(&mut toy, &stop).map_err(|e| e.to_string())?;
                node.shutdown().map_err(|e| e.to_string())?;
                Ok(toy.stats)
            })
        })
        .collect();
    drop(ready_tx);
    let ids: Vec<u64> = (0..2).map(|_| ready_rx.recv_timeout(Duration::from_secs(60)).expect("both nodes connect")).collect();
    assert_ne!(ids[0], ids[1]);

    let mut run = venv_command(&venv, "flwr", &home);
    run.arg("run").arg(&app).args(["ci", "--stream"]).current_dir(work.path());
    let run_log = work.path().join("run.log");
    procs.spawn("flwr-run", run, &run_log);
    let status = procs.wait("flwr-run", Duration::from_secs(240));
    let log = std::fs::read_to_string(&run_log).unwrap_or_default();
    let superlink_log = std::fs::read_to_string(work.path().join("superlink.log")).unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    let stats: Vec<Vec<MessageStats>> = nodes
        .into_iter()
        .map(|n| n.join().expect("node thread").expect("node ran and left cleanly"))
        .collect();
    let context = format!("flwr run: {status:?}\n--- run.log\n{log}\n--- superlink.log (tail)\n{}", tail(&superlink_log, 3000));
    assert!(status.is_some_and(|s| s.success()), "{context}");

    // FedAvg weights 0.1 and 0.2 by 10 and 20 examples: +1/6 a round, 1/3 after 2 rounds.
    let result = log.lines().find(|l| l.contains("LOOPBACK_RESULT")).unwrap_or_else(|| panic!("no result\n{context}"));
    let field = |name: &str| -> f64 {
        let start = result.find(&format!("{name}=")).unwrap() + name.len() + 1;
        result[start..].split_whitespace().next().unwrap().parse().unwrap()
    };
    for name in ["b_mean", "b_min", "b_max"] {
        assert!((field(name) - 1.0 / 3.0).abs() < 1e-5, "{name} in {result}");
    }
    assert!(result.contains("shape=4x512") && result.contains("dtype=float32"), "{result}");
    // Error replies reach the ServerApp with Flower's code; the nodes then answer again.
    let queries: Vec<&str> = log.lines().filter(|l| l.contains("LOOPBACK_QUERY")).collect();
    assert_eq!(queries.iter().filter(|l| l.contains("fail=True") && l.contains("error=2:asked to fail")).count(), 2, "{context}");
    assert_eq!(queries.iter().filter(|l| l.contains("fail=False") && l.contains("pong=1")).count(), 2, "{context}");
    assert!(log.contains("LOOPBACK_DONE"), "{context}");

    for (partition, node_stats) in stats.iter().enumerate() {
        let count = |t: &str| node_stats.iter().filter(|s| s.message_type == t).count();
        assert_eq!((count("train"), count("evaluate"), count("query")), (2, 2, 2), "node {partition}");
        for s in node_stats {
            eprintln!(
                "node {partition} {:<8} group {:>2}: pulled {} objects / {} B, pushed {} / {} B, protocol {:.3} s, handler {:.4} s",
                s.message_type, s.group_id, s.objects_pulled, s.bytes_pulled, s.objects_pushed, s.bytes_pushed, s.protocol_seconds, s.handler_seconds
            );
        }
    }
}

fn tail(text: &str, n: usize) -> &str {
    let start = text.len().saturating_sub(n);
    let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
    &text[start..]
}

//! fedvlm nodes in a real Flower federation, end to end on loopback: a stock
//! `flower-superlink` (flwr 1.42 from PyPI, see `tests/common/flower.rs`), three
//! `examples/flower_node` processes on the quick start's task, and `flwr run` of
//! `examples/flower_app` (stock FedAvg) for 3 rounds. Checked:
//! * the run finishes, and every malformed train instruction (wrong shape, unknown name, the
//!   private `lora_a`, NaN, no arrays) gets an error reply while the nodes carry on;
//! * each round's global arrays are the example-weighted mean of what the nodes sent;
//! * no array named `lora_a` ever reaches the server under pLoRA;
//! * each node's personalised accuracy and loss equal the in-process `Simulation` with the same
//!   seeds (within 1e-4);
//! * a node killed with SIGKILL after round 1 and restarted with the same `--state-dir`
//!   rejoins with the same private `A`, and trains on;
//! * a stock `flower-supernode` running the app's Python ClientApp joins fedvlm nodes in one
//!   run (mixed federation, same record keys);
//! * SIGTERM makes a node leave cleanly (exit 0).
//!
//! Every process runs in its own process group and is killed by the guard, also on failure.

#[path = "common/flower.rs"]
mod flower_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use flower_common::{
    Processes, app_dir, check_aggregates, export_initial, flwr_run, flwr_venv, free_port,
    node_binary, node_events, start_superlink, tail, venv_command, wait_for_event, write_flwr_home,
};
use serde_json::Value;

use fedvlm::federated::ShareSpec;
use fedvlm::synthetic::Quickstart;
use fedvlm::{FedAvg, Sharing, Simulation};

type B = Autodiff<Flex>;

const NODES: usize = 3;
const ROUNDS: u64 = 3;

fn node_command(binary: &Path, port: u16, partition: usize, state: &Path) -> Command {
    let mut command = Command::new(binary);
    command.args([
        "--superlink",
        &format!("127.0.0.1:{port}"),
        "--insecure",
        "--task",
        "synthetic",
        "--partition-id",
        &partition.to_string(),
        "--num-partitions",
        &NODES.to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--heartbeat-interval",
        "10",
    ]);
    command
}

/// The in-process simulation of the same federation: per round, per client, (accuracy, loss).
fn simulated() -> Vec<Vec<(f64, f64)>> {
    let mut quickstart = Quickstart::new(NODES);
    quickstart.simulation.rounds = ROUNDS;
    quickstart.simulation.progress = false;
    let device = Default::default();
    let mut sim = Simulation::new(
        quickstart.simulation.clone(),
        ShareSpec::new(Sharing::PLora),
        quickstart.task::<B>(&device).unwrap(),
        FedAvg::new(),
        quickstart.models::<B>(&device).unwrap(),
    )
    .unwrap();
    sim.run(|_, _| Ok(()))
        .unwrap()
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| {
            r.clients
                .iter()
                .map(|c| c.test.map(|m| (m.accuracy, m.loss)).unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn fedvlm_nodes_federate_on_a_stock_flower_superlink() {
    let venv = flwr_venv();
    let binary = node_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let home = work.join("flwr-home");
    let port = free_port();
    write_flwr_home(&home, port, None);

    let flags = [
        "--task",
        "synthetic",
        "--num-partitions",
        &NODES.to_string(),
    ]
    .map(String::from);
    export_initial(&binary, &flags, &[], work);

    let mut procs = Processes::default();
    start_superlink(&mut procs, &venv, &home, work, port);

    let log = |k: usize, generation: usize| work.join(format!("node{k}.{generation}.log"));
    let state = |k: usize| work.join(format!("state{k}"));
    let mut pids = Vec::new();
    for k in 0..NODES {
        pids.push(procs.spawn(
            &format!("node{k}"),
            node_command(&binary, port, k, &state(k)),
            &log(k, 0),
        ));
    }
    let mut partition_of = BTreeMap::new();
    for k in 0..NODES {
        let connected = wait_for_event(&log(k, 0), Duration::from_secs(60), "connected", |e| {
            e["event"] == "connected"
        });
        partition_of.insert(connected["node_id"].as_u64().unwrap(), k);
    }

    // The main run: malformed probe, then 3 rounds of stock FedAvg.
    let result_path = work.join("main.json");
    let run_config = format!(
        "initial-arrays='{}' result-path='{}' round-timeout=90.0 min-nodes={NODES} \
         num-server-rounds={ROUNDS} malformed-probe=true",
        work.join("init.npz").display(),
        result_path.display()
    );
    let mut command = venv_command(&venv, "flwr", &home);
    command
        .arg("run")
        .arg(app_dir())
        .args(["ci", "--stream", "--run-config", &run_config]);
    procs.spawn("flwr-main", command, &work.join("main.log"));

    // Kill node 0 with SIGKILL once it has answered round 1's train instruction, and restart
    // it on the same state folder: it must come back with the private A it had saved.
    let trained_round_1 = wait_for_event(&log(0, 0), Duration::from_secs(240), "round 1", |e| {
        e["message_type"] == "train" && e["round"] == 1 && e["error"].is_null()
    });
    let killed = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", pids[0])])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert!(procs.wait("node0", Duration::from_secs(10)).is_some());
    procs.spawn(
        "node0-again",
        node_command(&binary, port, 0, &state(0)),
        &log(0, 1),
    );
    let status = procs.wait("flwr-main", Duration::from_secs(300));
    let main_log = work.join("main.log");
    assert!(
        status.is_some_and(|s| s.success()),
        "flwr run: {status:?}\n{}\n--- superlink\n{}",
        tail(&main_log, 6000),
        tail(&work.join("superlink.log"), 3000)
    );
    let result: Value =
        serde_json::from_slice(&std::fs::read(&result_path).expect("result")).expect("json");

    // The restarted node restored exactly the private tensors it had after round 1.
    let restored = wait_for_event(&log(0, 1), Duration::from_secs(30), "state", |e| {
        e["event"] == "state"
    });
    assert_eq!(restored["restored_round"], 1, "{restored}");
    assert_eq!(
        restored["private_sha256"], trained_round_1["private_sha256"],
        "the restarted node must rejoin with its own A"
    );
    let fresh = node_events(&log(1, 0))
        .into_iter()
        .find(|e| e["event"] == "state")
        .expect("node 1 state");
    assert_ne!(restored["private_sha256"], fresh["private_sha256"]);
    let again = wait_for_event(&log(0, 1), Duration::from_secs(5), "connected", |e| {
        e["event"] == "connected"
    });
    partition_of.insert(again["node_id"].as_u64().unwrap(), 0);

    // Malformed instructions: every node answered each with an error reply.
    let probe = result["probe"].as_array().expect("probe");
    assert_eq!(probe.len(), 5);
    for case in probe {
        let replies = case["replies"].as_array().unwrap();
        assert_eq!(replies.len(), NODES, "{case}");
        assert!(replies.iter().all(|r| !r["error"].is_null()), "{case}");
    }

    // The server's arithmetic, and what travelled.
    let names = check_aggregates(&result);
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n.ends_with("lora_b")), "{names:?}");
    assert!(names.iter().all(|n| !n.contains("lora_a")));

    // Personalised accuracy equals the in-process simulation's, round by round.
    let expected = simulated();
    let mut compared = 0;
    for evaluation in result["evaluate"].as_array().unwrap() {
        let round = evaluation["round"].as_u64().unwrap() as usize;
        for reply in evaluation["replies"].as_array().unwrap() {
            if !reply["error"].is_null() {
                continue;
            }
            let node = reply["node_id"].as_u64().unwrap();
            let k = partition_of[&node];
            let (accuracy, loss) = expected[round - 1][k];
            let got_accuracy = reply["metrics"]["accuracy"].as_f64().unwrap();
            let got_loss = reply["metrics"]["loss"].as_f64().unwrap();
            assert!(
                (got_accuracy - accuracy).abs() <= 1e-4 && (got_loss - loss).abs() <= 1e-4,
                "round {round} client {k}: node ({got_accuracy}, {got_loss}) vs simulation ({accuracy}, {loss})"
            );
            compared += 1;
        }
    }
    // Every node in every round, but node 0's round-1 evaluation (it was killed by then).
    assert!(
        compared >= NODES * ROUNDS as usize - 1,
        "compared {compared}"
    );
    let restarted_trained = node_events(&log(0, 1))
        .into_iter()
        .filter(|e| e["message_type"] == "train" && e["error"].is_null())
        .count();
    assert!(restarted_trained >= 1, "the restarted node trained on");

    // A mixed federation: a stock flower-supernode running the app's Python ClientApp beside
    // the fedvlm nodes, one round.
    let mut supernode = venv_command(&venv, "flower-supernode", &home);
    supernode.current_dir(work).args([
        "--insecure",
        "--superlink",
        &format!("127.0.0.1:{port}"),
        "--port",
        &free_port().to_string(),
        "--node-config",
        "num-examples=100",
    ]);
    procs.spawn("supernode", supernode, &work.join("supernode.log"));
    let mixed = flwr_run(
        &mut procs,
        &venv,
        &home,
        work,
        "mixed",
        &format!("min-nodes={} num-server-rounds=1", NODES + 1),
    );
    let replies = mixed["train"][0]["replies"].as_array().unwrap();
    let valid = replies.iter().filter(|r| r["error"].is_null()).count();
    assert!(valid > NODES, "mixed run: {replies:?}");
    check_aggregates(&mixed);

    // SIGTERM: a node deactivates, unregisters and exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &pids[1].to_string()])
        .status();
    let status = procs.wait("node1", Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "node1 after SIGTERM: {status:?}\n{}",
        tail(&log(1, 0), 2000)
    );
}

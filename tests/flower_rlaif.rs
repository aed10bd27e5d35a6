//! The paper's main experiment with one node per machine: two `flower_node --task rlaif`
//! processes (the flags of `examples/fedvlm_rlaif`, on a tiny Florence-2 and a tiny RLAIF-V
//! shard written here) join a stock `flower-superlink`, and `flwr run` of `examples/flower_app`
//! runs one round of stock FedAvg: both nodes train their partition (split by source) and
//! evaluate, only `lora_b` travels, and the server's arrays are the weighted mean.

mod common;
#[path = "common/flower.rs"]
mod flower_common;

use common::florence2_wide::wide_florence2_folder;
use common::rlaif_shards::write_dataset;
use flower_common::{
    Processes, check_aggregates, export_initial, flwr_run, flwr_venv, free_port, node_binary,
    start_nodes, start_superlink, write_flwr_home,
};

/// The fedvlm_rlaif flags both nodes and the export share.
fn task_flags(model: &str, data: &str) -> Vec<String> {
    [
        "--task",
        "rlaif",
        "--num-partitions",
        "2",
        "--model",
        model,
        "--data-dir",
        data,
        "--local-epochs",
        "1",
        "--batch-size",
        "3",
        "--eval-batch-size",
        "4",
        "--lr",
        "0.01",
        "--test-fraction",
        "0.25",
        "--max-prompt-len",
        "24",
        "--max-answer-len",
        "16",
        "--seed",
        "3",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn rlaif_nodes_run_a_round_on_a_stock_superlink() {
    let venv = flwr_venv();
    let binary = node_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let model = wide_florence2_folder();
    let data = work.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_dataset(&data);
    let flags = task_flags(model.path().to_str().unwrap(), data.to_str().unwrap());

    let offline = [("HF_HUB_OFFLINE", "1")];
    export_initial(&binary, &flags, &offline, work);
    let home = work.join("flwr-home");
    let port = free_port();
    write_flwr_home(&home, port, None);
    let mut procs = Processes::default();
    start_superlink(&mut procs, &venv, &home, work, port);
    start_nodes(&mut procs, &binary, port, 2, &flags, &offline, work);
    let result = flwr_run(
        &mut procs,
        &venv,
        &home,
        work,
        "rlaif",
        "min-nodes=2 num-server-rounds=1",
    );
    let names = check_aggregates(&result);
    assert_eq!(names.len(), 4, "two nodes x q/v lora_b: {names:?}");
    assert!(names.iter().all(|n| n.ends_with("lora_b")), "{names:?}");
    let evaluated = result["evaluate"][0]["replies"].as_array().unwrap();
    assert_eq!(evaluated.len(), 2);
    for reply in evaluated {
        assert!(reply["error"].is_null(), "{reply}");
        let accuracy = reply["metrics"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{reply}");
    }
}

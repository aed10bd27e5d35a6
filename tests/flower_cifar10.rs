//! The paper's CIFAR-10 experiment with one node per machine: two `flower_node --task cifar10`
//! processes (the flags of `examples/cifar10_mobilenet`, on CIFAR-10 files in the real format
//! written here and a randomly initialised MobileNetV3) join a stock `flower-superlink`, and
//! `flwr run` of `examples/flower_app` runs two rounds of stock FedAvg: both nodes train their
//! label-sorted shards from the frozen-prefix cache and evaluate, under pLoRA only the
//! adapters' `lora_b` and the new head travel (never `lora_a`), and the server's arrays are the
//! example-weighted mean of the replies.

#[path = "common/flower.rs"]
mod flower_common;

use std::path::Path;

use fedvlm::data::{CIFAR10_IMAGE_BYTES, CIFAR10_RECORDS_PER_FILE, Cifar10, write_cifar_bin};
use flower_common::{
    Processes, check_aggregates, export_initial, flwr_run, flwr_venv, free_port, node_binary,
    start_nodes, start_superlink, write_flwr_home,
};

/// Six full-size batch files: labels cycle through the ten classes, pixels follow the label
/// (so the classes are learnable) plus a little per-record texture.
fn write_dataset(dir: &Path) {
    let dir = dir.join(Cifar10::DIR_NAME);
    std::fs::create_dir_all(&dir).unwrap();
    let names = Cifar10::TRAIN_FILES.iter().chain([&Cifar10::TEST_FILE]);
    for (f, name) in names.enumerate() {
        let records: Vec<(u8, [u8; CIFAR10_IMAGE_BYTES])> = (0..CIFAR10_RECORDS_PER_FILE)
            .map(|r| {
                let label = ((r * 7 + f) % 10) as u8;
                let mut image = [0u8; CIFAR10_IMAGE_BYTES];
                for (k, px) in image.iter_mut().enumerate() {
                    *px = (usize::from(label) * 25 + (k * 31 + r) % 17) as u8;
                }
                (label, image)
            })
            .collect();
        write_cifar_bin(&dir.join(name), &records).unwrap();
    }
}

/// The cifar10_mobilenet flags both nodes and the export share.
fn task_flags(data: &str) -> Vec<String> {
    [
        "--task",
        "cifar10",
        "--num-partitions",
        "2",
        "--data-dir",
        data,
        "--random-init",
        "--train-limit",
        "160",
        "--test-limit",
        "40",
        "--shards",
        "4",
        "--sharing",
        "plora",
        "--local-epochs",
        "1",
        "--batch-size",
        "16",
        "--global-eval-every",
        "0",
        "--seed",
        "3",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn cifar10_nodes_run_two_rounds_on_a_stock_superlink() {
    let venv = flwr_venv();
    let binary = node_binary();
    let work = tempfile::tempdir().expect("tempdir");
    let work = work.path();
    let data = work.join("data");
    write_dataset(&data);
    let flags = task_flags(data.to_str().unwrap());

    export_initial(&binary, &flags, &[], work);
    let home = work.join("flwr-home");
    let port = free_port();
    write_flwr_home(&home, port, None);
    let mut procs = Processes::default();
    start_superlink(&mut procs, &venv, &home, work, port);
    start_nodes(&mut procs, &binary, port, 2, &flags, &[], work);
    let result = flwr_run(
        &mut procs,
        &venv,
        &home,
        work,
        "cifar10",
        "min-nodes=2 num-server-rounds=2",
    );
    // Every round's aggregate is the example-weighted mean of what the nodes sent.
    let names = check_aggregates(&result);
    assert_eq!(result["aggregates"].as_array().unwrap().len(), 2);
    assert!(names.iter().all(|n| !n.contains("lora_a")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with("lora_b")), "{names:?}");
    assert!(
        names.iter().any(|n| n.contains("classifier.3")),
        "the new head travels under every rule: {names:?}"
    );
    for round in result["evaluate"].as_array().unwrap() {
        let replies = round["replies"].as_array().unwrap();
        assert_eq!(replies.len(), 2);
        for reply in replies {
            assert!(reply["error"].is_null(), "{reply}");
            let accuracy = reply["metrics"]["accuracy"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&accuracy), "{reply}");
        }
    }
}

//! A fedvlm client as a Flower SuperNode: joins a stock Flower 1.42 SuperLink and trains one
//! partition of a task with the same client runtime the in-process simulation runs. The model,
//! the private `A`, the optimiser and any frozen-prefix cache stay in memory across rounds; only
//! the shared tensors travel. Start a SuperLink, one node per machine, then `flwr run` the app
//! in `examples/flower_app` (README: "Across machines with Flower").
//!
//! ```text
//! # the initial global tensors for the ServerApp (payload names, float32), then exit:
//! cargo run --release --example flower_node -- --task synthetic --num-partitions 3 --export-initial init.npz
//! # one node (partition 0 of 3) against a SuperLink started with --insecure:
//! cargo run --release --example flower_node -- --superlink 127.0.0.1:8000 --insecure \
//!     --task synthetic --partition-id 0 --num-partitions 3 --state-dir runs/node0
//! # the paper's experiments, one node per machine: the flags of their examples follow --task
//! cargo run --release --example flower_node -- --superlink HOST:8000 --root-certificates ca.pem \
//!     --auth-key node.key --task cifar10 --partition-id 3 --num-partitions 40 --quick
//! ```
//!
//! Every handled instruction is printed on stdout as one line `FEDVLM_NODE {json}` (round,
//! metrics, bytes, seconds, and a sha256 of the private tensors that never leave the node).

// The CIFAR-10 and RLAIF-V flag files (included by `task.rs`) each include the shared
// `examples/common/robustness.rs`: two copies of one small module in this binary.
#![allow(clippy::duplicate_mod)]

mod task;

use std::path::PathBuf;
use std::process::ExitCode;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::federated::FederatedTask;
use fedvlm::flower::{FlowerNode, NodeApp, NodeConfig, Transport, stop_on_signals};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

type AnyError = Box<dyn std::error::Error>;

/// The node's own flags; every other flag goes to the task (see `--task`).
#[derive(Parser, Debug)]
#[command(
    about = "A fedvlm client as a Flower 1.42 SuperNode",
    after_help = "Flags not listed here go to the task: for --task synthetic `--sharing`, `--seed`, \
                  `--wire-dtype`; for --task cifar10 and --task rlaif every flag of the \
                  cifar10_mobilenet and fedvlm_rlaif examples."
)]
pub struct NodeArgs {
    /// The SuperLink's Fleet API, HOST:PORT.
    #[arg(long)]
    superlink: Option<String>,
    /// Plain HTTP (a SuperLink started with --insecure).
    #[arg(long, conflicts_with = "root_certificates")]
    insecure: bool,
    /// TLS: the CA certificate(s) (PEM) that signed the SuperLink's certificate.
    #[arg(long)]
    root_certificates: Option<PathBuf>,
    /// Node authentication: an OpenSSH ECDSA P-384 private key registered with
    /// `flwr supernode register KEY.pub`.
    #[arg(long)]
    auth_key: Option<PathBuf>,
    /// The task: synthetic (the quick start's), cifar10 or rlaif.
    #[arg(long)]
    task: String,
    /// This node's partition (client index) of the task.
    #[arg(long, default_value_t = 0)]
    partition_id: usize,
    /// The federation's number of partitions (clients).
    #[arg(long)]
    num_partitions: usize,
    /// Keep the private tensors (A under pLoRA) and the last round here; a restarted node
    /// rejoins with them.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Write the initial global shared tensors (.npz, payload names, float32) and exit.
    #[arg(long)]
    export_initial: Option<PathBuf>,
    /// Seconds the SuperLink waits for the next heartbeat before it counts the node as gone
    /// (Flower accepts 10 to 1800).
    #[arg(long, default_value_t = 30.0)]
    heartbeat_interval: f64,
}

/// The node's flags (with their values) and the task's flags, split.
fn split_args(argv: Vec<String>) -> (Vec<String>, Vec<String>) {
    const WITH_VALUE: [&str; 9] = [
        "--superlink",
        "--root-certificates",
        "--auth-key",
        "--task",
        "--partition-id",
        "--num-partitions",
        "--state-dir",
        "--export-initial",
        "--heartbeat-interval",
    ];
    let mut argv = argv.into_iter();
    let mut node = vec![argv.next().unwrap_or_else(|| "flower_node".into())];
    let mut task = vec!["flower_node --task".to_string()];
    while let Some(arg) = argv.next() {
        let name = arg.split('=').next().unwrap_or_default().to_string();
        if WITH_VALUE.contains(&name.as_str()) {
            let inline = arg.contains('=');
            node.push(arg);
            if !inline && let Some(value) = argv.next() {
                node.push(value);
            }
        } else if matches!(name.as_str(), "--insecure" | "--help" | "-h") {
            node.push(arg);
        } else {
            task.push(arg);
        }
    }
    (node, task)
}

fn main() -> ExitCode {
    let (node_argv, task_argv) = split_args(std::env::args().collect());
    let args = NodeArgs::parse_from(node_argv);
    match run(&args, task_argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a node app against the SuperLink until SIGINT/SIGTERM.
struct Serve<'a> {
    args: &'a NodeArgs,
    superlink: String,
    transport: Transport,
}

impl task::WithApp<B> for Serve<'_> {
    fn serve<T: FederatedTask<B>>(self, mut app: NodeApp<B, T>) -> Result<(), AnyError> {
        let args = self.args;
        if let Some(dir) = &args.state_dir {
            let (restored, round) = app.with_state_dir(dir)?;
            app = restored;
            let private = app.private_sha256();
            println!(
                "FEDVLM_NODE {}",
                serde_json::json!({"event": "state", "restored_round": round, "private_sha256": private})
            );
        }
        let mut app = app.with_observer(|report| {
            println!(
                "FEDVLM_NODE {}",
                serde_json::to_string(report).unwrap_or_default()
            );
        });
        let config = NodeConfig {
            transport: self.transport,
            auth_key: args.auth_key.clone(),
            heartbeat_interval: args.heartbeat_interval,
            ..NodeConfig::insecure(self.superlink)
        };
        let stop = stop_on_signals()?;
        let mut node = FlowerNode::connect(config)?;
        println!(
            "FEDVLM_NODE {}",
            serde_json::json!({"event": "connected", "node_id": node.node_id(), "partition": args.partition_id})
        );
        let outcome = node.run(&mut app, &stop);
        node.shutdown()?;
        outcome?;
        Ok(())
    }
}

fn run(args: &NodeArgs, task_argv: Vec<String>) -> Result<(), AnyError> {
    let device = Default::default();
    let task = task::TaskArgs::parse(&args.task, task_argv, args.num_partitions)?;
    if let Some(path) = &args.export_initial {
        let names = task.export_initial::<B>(path, &device)?;
        println!("wrote {} ({})", path.display(), names.join(", "));
        return Ok(());
    }
    let superlink = args
        .superlink
        .clone()
        .ok_or("--superlink HOST:PORT is required (or --export-initial FILE)")?;
    if !(10.0..=1800.0).contains(&args.heartbeat_interval) {
        return Err(
            "--heartbeat-interval must be between 10 and 1800 seconds (Flower's range)".into(),
        );
    }
    let transport = match (&args.root_certificates, args.insecure) {
        (Some(ca), _) => Transport::Tls {
            root_certificates: ca.clone(),
        },
        (None, true) => Transport::Insecure,
        (None, false) => return Err("choose --insecure or --root-certificates CA.pem".into()),
    };
    task.node_app::<B, _>(
        args.partition_id,
        &device,
        Serve {
            args,
            superlink,
            transport,
        },
    )?;
    println!("FEDVLM_NODE {}", serde_json::json!({"event": "stopped"}));
    Ok(())
}

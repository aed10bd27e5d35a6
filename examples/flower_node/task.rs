//! The tasks a node can serve, each built exactly as its in-process example builds it, so that
//! partition `I` of `N` is that example's client `I` with the same seeds.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use clap::Parser;
use fedvlm::federated::{FederatedTask, Federation, ShareSpec, WireDtype, write_atomic};
use fedvlm::flower::{ArrayRecord, NodeApp, NpyDtype, encode_npz};
use fedvlm::synthetic::Quickstart;
use fedvlm::{Sharing, experiments};

use super::AnyError;

#[allow(dead_code)]
#[path = "../cifar10_mobilenet/args.rs"]
mod cifar_args;
#[allow(dead_code)]
#[path = "../fedvlm_rlaif/args.rs"]
mod rlaif_args;

/// `--task synthetic`: the quick start's federation.
#[derive(Parser, Debug)]
pub struct SyntheticArgs {
    /// Sharing rule: plora, fedavg-lora, ffa-lora or fedsa-lora.
    #[arg(long, default_value = "plora")]
    sharing: Sharing,
    /// Seed of shuffling and dropout (the quick start's: 42).
    #[arg(long)]
    seed: Option<u64>,
    /// Precision of the arrays sent: f32 or f16.
    #[arg(long, default_value = "f32")]
    wire_dtype: WireDtype,
}

/// A task and its flags.
pub enum TaskArgs {
    /// `--task synthetic` with N partitions.
    Synthetic(SyntheticArgs, usize),
    /// `--task cifar10`: the flags of `examples/cifar10_mobilenet`.
    Cifar10(Box<cifar_args::Args>),
    /// `--task rlaif`: the flags of `examples/fedvlm_rlaif`.
    Rlaif(Box<rlaif_args::Args>),
}

/// What to do with the node app once built (generic over the task type).
pub trait WithApp<B: AutodiffBackend> {
    /// Serves `app`.
    fn serve<T: FederatedTask<B>>(self, app: NodeApp<B, T>) -> Result<(), AnyError>;
}

fn partitions(flag: Option<usize>, num_partitions: usize) -> Result<Option<usize>, AnyError> {
    match flag {
        Some(n) if n != num_partitions => {
            Err(format!("--clients {n} disagrees with --num-partitions {num_partitions}").into())
        }
        _ => Ok(Some(num_partitions)),
    }
}

fn npy_dtype(wire: WireDtype) -> Result<NpyDtype, AnyError> {
    match wire {
        WireDtype::F32 => Ok(NpyDtype::F32),
        WireDtype::F16 => Ok(NpyDtype::F16),
        WireDtype::Bf16 => Err("Flower's arrays are numpy arrays: use f32 or f16, not bf16".into()),
    }
}

impl TaskArgs {
    /// Parses the task's own flags (`argv[0]` is a program name).
    pub fn parse(name: &str, argv: Vec<String>, num_partitions: usize) -> Result<Self, AnyError> {
        if num_partitions == 0 {
            return Err("--num-partitions must be at least 1".into());
        }
        Ok(match name {
            "synthetic" => Self::Synthetic(SyntheticArgs::try_parse_from(argv)?, num_partitions),
            "cifar10" => {
                let mut args = cifar_args::Args::try_parse_from(argv)?;
                args.clients = partitions(args.clients, num_partitions)?;
                Self::Cifar10(Box::new(args))
            }
            "rlaif" => {
                let mut args = rlaif_args::Args::try_parse_from(argv)?;
                args.clients = partitions(args.clients, num_partitions)?;
                Self::Rlaif(Box::new(args))
            }
            other => {
                return Err(format!("unknown --task `{other}` (synthetic, cifar10, rlaif)").into());
            }
        })
    }

    /// Writes the initial global shared tensors (client 0's, as the simulation starts from)
    /// as `.npz` (payload names, float32); returns their names.
    pub fn export_initial<B: AutodiffBackend>(
        &self,
        path: &Path,
        device: &B::Device,
    ) -> Result<Vec<String>, AnyError> {
        struct Export<'a>(&'a Path, Vec<String>);
        impl<B: AutodiffBackend> WithApp<B> for &mut Export<'_> {
            fn serve<T: FederatedTask<B>>(self, app: NodeApp<B, T>) -> Result<(), AnyError> {
                let shared = app.client().shared();
                self.1 = shared.names().map(String::from).collect();
                let npz = encode_npz(&ArrayRecord::from_payload(&shared, NpyDtype::F32));
                write_atomic(self.0, &npz)?;
                Ok(())
            }
        }
        let mut export = Export(path, Vec::new());
        self.node_app::<B, _>(0, device, &mut export)?;
        Ok(export.1)
    }

    /// Builds partition `partition`'s node app and hands it to `then`.
    pub fn node_app<B: AutodiffBackend, W: WithApp<B>>(
        &self,
        partition: usize,
        device: &B::Device,
        then: W,
    ) -> Result<(), AnyError> {
        match self {
            Self::Synthetic(args, n) => {
                let quickstart = Quickstart::new(*n);
                let mut config = quickstart.simulation.clone();
                if let Some(seed) = args.seed {
                    config.seed = seed;
                }
                let federation = Federation {
                    task: quickstart.task::<B>(device)?,
                    models: quickstart.models::<B>(device)?,
                    spec: ShareSpec::new(args.sharing),
                    config,
                };
                serve(federation, partition, npy_dtype(args.wire_dtype)?, then)
            }
            Self::Cifar10(args) => {
                let prepared = args.prepare::<B>(device)?;
                let inputs = prepared.inputs(None, false, true, device.clone());
                let sharing = args.sharing.unwrap_or_default();
                let federation = experiments::cifar10::federation(&inputs, sharing)?;
                let wire = npy_dtype(prepared.config.wire_dtype)?;
                serve(federation, partition, wire, then)
            }
            Self::Rlaif(args) => {
                let prepared = args.prepare::<B>(device)?;
                let inputs = prepared.inputs(None, false, true, device.clone());
                let sharing = args.sharing.unwrap_or_default();
                let federation = experiments::rlaif::federation(&inputs, sharing)?;
                serve(federation, partition, NpyDtype::F32, then)
            }
        }
    }
}

fn serve<B: AutodiffBackend, T: FederatedTask<B>, W: WithApp<B>>(
    federation: Federation<B, T>,
    partition: usize,
    wire: NpyDtype,
    then: W,
) -> Result<(), AnyError> {
    let config = federation.config.client_config();
    let (task, client) = federation.into_client(partition)?;
    then.serve(NodeApp::new(task, client, config, wire)?)
}

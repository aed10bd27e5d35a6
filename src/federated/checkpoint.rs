//! Checkpoints of a simulation: safetensors files, the strategy's state and a JSON manifest
//! naming every file's sha256, written atomically beside the previous checkpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::write_atomic;
use super::client_state::hex;
use super::phase::{self, RunPhase};
use crate::strategy::StrategyState;

use crate::error::{FedError, Result};
use crate::lora::Sharing;
use crate::params::payload::{Payload, WireDtype};

const MANIFEST: &str = "checkpoint.json";
const STRATEGY: &str = "strategy.json";
const FORMAT: &str = "fedvlm.checkpoint.v1";

/// The state of a simulation after a completed round.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Rounds completed.
    pub completed_rounds: u64,
    /// The run's seed.
    pub seed: u64,
    /// The run's sharing rule.
    pub sharing: Sharing,
    /// Global shared tensors.
    pub global: Payload,
    /// Every client's adapter matrices (shared and private) and shared extras.
    pub clients: Vec<Payload>,
    /// The round of the global state each client holds (`None`: never received one).
    pub synced: Vec<Option<u64>>,
    /// The strategy's state (server optimiser moments, momentum), when it has any.
    pub strategy: Option<StrategyState>,
    /// Every client's local optimiser state when optimisers persist across rounds
    /// ([`crate::federated::ClientConfig::keep_optimizer_state`]), keyed by parameter path;
    /// empty, or `None` for a client that has not trained yet, otherwise.
    pub optimizers: Vec<Option<Payload>>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    completed_rounds: u64,
    seed: u64,
    sharing: Sharing,
    clients: usize,
    synced: Vec<Option<u64>>,
    /// sha256 of every other file of the checkpoint, by file name.
    #[serde(default)]
    files: BTreeMap<String, String>,
    /// Which clients have an `optimizer_{k}.safetensors`.
    #[serde(default)]
    optimizers: Vec<bool>,
}

impl Checkpoint {
    /// Writes the checkpoint into `dir` atomically: every file (`global.safetensors`,
    /// `client_{k}.safetensors`, `optimizer_{k}.safetensors`, `strategy.json`, then the manifest `checkpoint.json` naming
    /// each file's sha256) goes into a temporary folder beside `dir` and is synced to disk; the
    /// previous checkpoint is then renamed to `<dir>.prev` and the new one to `dir`. A process
    /// killed at any point leaves a complete checkpoint in `dir` or in `<dir>.prev`, and
    /// [`Checkpoint::load`] finds it.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let tmp = sibling(dir, &format!("tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| FedError::io(&tmp, e))?;
        }
        let mut files = BTreeMap::new();
        let round = self.completed_rounds;
        let mut write = |name: String, bytes: &[u8]| -> Result<()> {
            files.insert(name.clone(), hex(&Sha256::digest(bytes)));
            write_atomic(tmp.join(&name), bytes)?;
            phase::reached(|| RunPhase::CheckpointFile { round, file: name });
            Ok(())
        };
        write(
            "global.safetensors".into(),
            &self.global.to_bytes(WireDtype::F32)?,
        )?;
        for (k, client) in self.clients.iter().enumerate() {
            write(
                format!("client_{k}.safetensors"),
                &client.to_bytes(WireDtype::F32)?,
            )?;
        }
        for (k, state) in self.optimizers.iter().enumerate() {
            if let Some(state) = state {
                write(
                    format!("optimizer_{k}.safetensors"),
                    &state.to_bytes(WireDtype::F32)?,
                )?;
            }
        }
        if let Some(strategy) = &self.strategy {
            write(STRATEGY.into(), &serde_json::to_vec(strategy)?)?;
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            completed_rounds: self.completed_rounds,
            seed: self.seed,
            sharing: self.sharing,
            clients: self.clients.len(),
            synced: self.synced.clone(),
            files,
            optimizers: self.optimizers.iter().map(Option::is_some).collect(),
        };
        write_atomic(tmp.join(MANIFEST), &serde_json::to_vec_pretty(&manifest)?)?;
        phase::reached(|| RunPhase::CheckpointRename { round });
        let prev = sibling(dir, "prev");
        if dir.exists() {
            if prev.exists() {
                std::fs::remove_dir_all(&prev).map_err(|e| FedError::io(&prev, e))?;
            }
            std::fs::rename(dir, &prev).map_err(|e| FedError::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| FedError::io(dir, e))?;
        if let Some(parent) = dir.parent()
            && let Ok(folder) = std::fs::File::open(parent)
        {
            let _ = folder.sync_all();
        }
        Ok(())
    }

    /// Whether `dir` (or its previous copy `<dir>.prev`) holds a checkpoint manifest.
    pub fn exists(dir: impl AsRef<Path>) -> bool {
        let dir = dir.as_ref();
        dir.join(MANIFEST).is_file() || sibling(dir, "prev").join(MANIFEST).is_file()
    }

    /// Reads the checkpoint in `dir`, every file checked against the manifest's sha256. A torn
    /// or corrupt checkpoint (a process killed while writing it, a damaged file) is reported
    /// on stderr and the previous one, `<dir>.prev`, is used instead.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        match Self::load_exact(dir) {
            Ok(checkpoint) => Ok(checkpoint),
            Err(error) => {
                let prev = sibling(dir, "prev");
                if !prev.join(MANIFEST).is_file() {
                    return Err(error);
                }
                eprintln!(
                    "checkpoint {} is unusable ({error}); using the previous one, {}",
                    dir.display(),
                    prev.display()
                );
                Self::load_exact(&prev)
            }
        }
    }

    /// Reads the checkpoint in exactly `dir`, verifying every file's sha256.
    fn load_exact(dir: &Path) -> Result<Self> {
        let manifest_path = dir.join(MANIFEST);
        let text = std::fs::read(&manifest_path).map_err(|e| FedError::io(&manifest_path, e))?;
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
            FedError::config("checkpoint", format!("{}: {e}", manifest_path.display()))
        })?;
        if manifest.format != FORMAT {
            return Err(FedError::config(
                "checkpoint",
                format!(
                    "unknown format {:?} in {}",
                    manifest.format,
                    manifest_path.display()
                ),
            ));
        }
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
            match manifest.files.get(name) {
                Some(sum) if *sum == hex(&Sha256::digest(&bytes)) => Ok(bytes),
                _ => Err(FedError::config(
                    "checkpoint",
                    format!(
                        "{} does not match its sha256 in {}",
                        path.display(),
                        manifest_path.display()
                    ),
                )),
            }
        };
        let payload = |name: &str| -> Result<Payload> {
            Payload::from_bytes(&read(name)?).map_err(|e| {
                FedError::config("checkpoint", format!("{}: {e}", dir.join(name).display()))
            })
        };
        let strategy = if manifest.files.contains_key(STRATEGY) {
            let bytes = read(STRATEGY)?;
            Some(serde_json::from_slice(&bytes).map_err(|e| {
                FedError::config(
                    "checkpoint",
                    format!("{}: {e}", dir.join(STRATEGY).display()),
                )
            })?)
        } else {
            None
        };
        Ok(Self {
            completed_rounds: manifest.completed_rounds,
            seed: manifest.seed,
            sharing: manifest.sharing,
            global: payload("global.safetensors")?,
            clients: (0..manifest.clients)
                .map(|k| payload(&format!("client_{k}.safetensors")))
                .collect::<Result<_>>()?,
            synced: manifest.synced,
            strategy,
            optimizers: manifest
                .optimizers
                .iter()
                .enumerate()
                .map(|(k, &saved)| {
                    saved
                        .then(|| payload(&format!("optimizer_{k}.safetensors")))
                        .transpose()
                })
                .collect::<Result<_>>()?,
        })
    }
}

/// `<dir>.<suffix>`, beside `dir`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{suffix}"));
    dir.with_file_name(name)
}

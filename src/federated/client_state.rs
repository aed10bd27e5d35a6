//! A client's private state on disk, for a client that outlives its process (a Flower node's
//! `--state-dir`): its adapter matrices and shared extras, and the last round it trained.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::write_atomic;
use crate::error::{FedError, Result};
use crate::lora::Sharing;
use crate::params::{Payload, WireDtype};

const TENSORS: &str = "client_state.safetensors";
const MANIFEST: &str = "client_state.json";
const OPTIMIZER: &str = "client_optimizer.safetensors";
const FORMAT: &str = "fedvlm.client-state.v1";

/// What [`ClientStateDir::load`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedClientState {
    /// Every adapter matrix (private ones included) and shared extra of the client.
    pub tensors: Payload,
    /// The last round the client trained in.
    pub last_round: u64,
    /// The round of the last global state the client received.
    pub synced: Option<u64>,
    /// The client's local optimiser state, when it keeps one across rounds
    /// ([`crate::federated::ClientRuntime::optimizer_state`]).
    pub optimizer: Option<Payload>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    client: usize,
    sharing: Sharing,
    last_round: u64,
    synced: Option<u64>,
    /// sha256 of the tensors file, so a file from another save is detected.
    sha256: String,
    /// sha256 of the optimiser state file, when the save has one.
    #[serde(default)]
    optimizer_sha256: Option<String>,
}

/// A folder holding one client's private state. Every save is atomic (temporary file, `fsync`,
/// rename; the manifest, naming the tensors file's sha256, is written last), so a process
/// killed at any moment leaves the previous complete state or the new one.
#[derive(Debug, Clone)]
pub struct ClientStateDir {
    dir: PathBuf,
    client: usize,
    sharing: Sharing,
}

impl ClientStateDir {
    /// The state folder of client `client` under `sharing` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>, client: usize, sharing: Sharing) -> Self {
        Self {
            dir: dir.into(),
            client,
            sharing,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves the client's state after `last_round`.
    pub fn save(&self, tensors: &Payload, last_round: u64, synced: Option<u64>) -> Result<()> {
        self.save_with_optimizer(tensors, None, last_round, synced)
    }

    /// Saves the client's state after `last_round`, with its local optimiser's state when it
    /// keeps one across rounds.
    pub fn save_with_optimizer(
        &self,
        tensors: &Payload,
        optimizer: Option<&Payload>,
        last_round: u64,
        synced: Option<u64>,
    ) -> Result<()> {
        let optimizer_sha256 = match optimizer {
            Some(state) => {
                let bytes = state.to_bytes(WireDtype::F32)?;
                write_atomic(self.dir.join(OPTIMIZER), &bytes)?;
                Some(hex(&Sha256::digest(&bytes)))
            }
            None => None,
        };
        let bytes = tensors.to_bytes(WireDtype::F32)?;
        let sha256 = hex(&Sha256::digest(&bytes));
        write_atomic(self.dir.join(TENSORS), &bytes)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            client: self.client,
            sharing: self.sharing,
            last_round,
            synced,
            sha256,
            optimizer_sha256,
        };
        write_atomic(
            self.dir.join(MANIFEST),
            &serde_json::to_vec_pretty(&manifest)?,
        )
    }

    /// Loads the saved state: `None` when the folder holds none yet. A state written for
    /// another client or sharing rule, or whose tensors do not match the manifest's checksum,
    /// is an error (never silently used).
    pub fn load(&self) -> Result<Option<SavedClientState>> {
        let manifest_path = self.dir.join(MANIFEST);
        let text = match std::fs::read(&manifest_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FedError::io(&manifest_path, e)),
        };
        let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
            FedError::config("state dir", format!("{}: {e}", manifest_path.display()))
        })?;
        let mismatch = |what: String| {
            Err(FedError::config(
                "state dir",
                format!("{}: {what}", manifest_path.display()),
            ))
        };
        if manifest.format != FORMAT {
            return mismatch(format!("unknown format {:?}", manifest.format));
        }
        if manifest.client != self.client || manifest.sharing != self.sharing {
            return mismatch(format!(
                "holds client {} under {}, this node is client {} under {}",
                manifest.client, manifest.sharing, self.client, self.sharing
            ));
        }
        let tensors_path = self.dir.join(TENSORS);
        let bytes = std::fs::read(&tensors_path).map_err(|e| FedError::io(&tensors_path, e))?;
        if hex(&Sha256::digest(&bytes)) != manifest.sha256 {
            return mismatch(format!(
                "{} does not match its sha256 here",
                tensors_path.display()
            ));
        }
        let optimizer = match &manifest.optimizer_sha256 {
            Some(sum) => {
                let path = self.dir.join(OPTIMIZER);
                let bytes = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
                if hex(&Sha256::digest(&bytes)) != *sum {
                    return mismatch(format!("{} does not match its sha256 here", path.display()));
                }
                Some(Payload::from_bytes(&bytes).map_err(|e| {
                    FedError::config("state dir", format!("{}: {e}", path.display()))
                })?)
            }
            None => None,
        };
        Ok(Some(SavedClientState {
            optimizer,
            tensors: Payload::from_bytes(&bytes).map_err(|e| {
                FedError::config("state dir", format!("{}: {e}", tensors_path.display()))
            })?,
            last_round: manifest.last_round,
            synced: manifest.synced,
        }))
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! Checkpoints of a simulation: safetensors files plus a small JSON manifest.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::lora::Sharing;
use crate::params::payload::{Payload, WireDtype};

const MANIFEST: &str = "checkpoint.json";

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
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: String,
    completed_rounds: u64,
    seed: u64,
    sharing: Sharing,
    clients: usize,
    synced: Vec<Option<u64>>,
}

impl Checkpoint {
    /// Writes `checkpoint.json`, `global.safetensors` and `client_{k}.safetensors` (f32) into
    /// `dir`, creating it. The manifest is written last, so an interrupted save is not taken for
    /// a complete one.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
        let write = |name: String, payload: &Payload| -> Result<()> {
            let path = dir.join(name);
            let bytes = payload.to_bytes(WireDtype::F32)?;
            std::fs::write(&path, bytes).map_err(|e| FedError::io(&path, e))
        };
        write("global.safetensors".into(), &self.global)?;
        for (k, client) in self.clients.iter().enumerate() {
            write(format!("client_{k}.safetensors"), client)?;
        }
        let manifest = Manifest {
            format: "fedvlm.checkpoint.v1".into(),
            completed_rounds: self.completed_rounds,
            seed: self.seed,
            sharing: self.sharing,
            clients: self.clients.len(),
            synced: self.synced.clone(),
        };
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&manifest)?)
            .map_err(|e| FedError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| FedError::io(&path, e))
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
        let manifest: Manifest = serde_json::from_slice(&text)?;
        if manifest.format != "fedvlm.checkpoint.v1" {
            return Err(FedError::config(
                "checkpoint",
                format!("unknown format {:?} in {}", manifest.format, path.display()),
            ));
        }
        let read = |name: String| -> Result<Payload> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
            Ok(Payload::from_bytes(&bytes)?)
        };
        Ok(Self {
            completed_rounds: manifest.completed_rounds,
            seed: manifest.seed,
            sharing: manifest.sharing,
            global: read("global.safetensors".into())?,
            clients: (0..manifest.clients)
                .map(|k| read(format!("client_{k}.safetensors")))
                .collect::<Result<_>>()?,
            synced: manifest.synced,
        })
    }
}

//! Where a run stands: the phases a [`crate::Simulation`] and its checkpoints pass through, and
//! one process-wide observer of them.
//!
//! The observer sees every phase as it starts, on the thread that runs it. It is meant for
//! progress displays, tracing and fault injection: the durable-run tests stop a child process
//! at an exact phase (a client's training, the server's aggregation, a checkpoint file half
//! way through the checkpoint) and kill it there with SIGKILL. Without an observer, reaching a
//! phase costs one atomic load.

use std::fmt;
use std::sync::OnceLock;

/// A phase of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunPhase {
    /// Client `client` starts its local training of `round`.
    Training {
        /// The round (1-based).
        round: u64,
        /// The client.
        client: usize,
    },
    /// The server starts aggregating `round`'s updates.
    Aggregation {
        /// The round.
        round: u64,
    },
    /// A checkpoint after `round` has written `file` into its temporary folder (the manifest,
    /// written last, is not a file of this phase).
    CheckpointFile {
        /// Rounds completed, as the checkpoint records.
        round: u64,
        /// The file just written (`global.safetensors`, `client_3.safetensors`...).
        file: String,
    },
    /// The checkpoint after `round` is complete in its temporary folder and is about to replace
    /// the current one (the previous is renamed aside first).
    CheckpointRename {
        /// Rounds completed.
        round: u64,
    },
}

impl fmt::Display for RunPhase {
    /// A short stable label: `training:3:1`, `aggregation:3`, `checkpoint-file:3:client_1.safetensors`,
    /// `checkpoint-rename:3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Training { round, client } => write!(f, "training:{round}:{client}"),
            Self::Aggregation { round } => write!(f, "aggregation:{round}"),
            Self::CheckpointFile { round, file } => write!(f, "checkpoint-file:{round}:{file}"),
            Self::CheckpointRename { round } => write!(f, "checkpoint-rename:{round}"),
        }
    }
}

type Observer = Box<dyn Fn(&RunPhase) + Send + Sync>;

static OBSERVER: OnceLock<Observer> = OnceLock::new();

/// Installs the process's observer of run phases. There is one per process, for its whole
/// life: returns `false` (and drops `observer`) when one is already installed.
pub fn set_phase_observer(observer: impl Fn(&RunPhase) + Send + Sync + 'static) -> bool {
    OBSERVER.set(Box::new(observer)).is_ok()
}

/// Tells the observer, if any, that `phase` starts (built only when one is installed).
pub(crate) fn reached(phase: impl FnOnce() -> RunPhase) {
    if let Some(observer) = OBSERVER.get() {
        observer(&phase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable() {
        let labels = [
            RunPhase::Training {
                round: 3,
                client: 1,
            },
            RunPhase::Aggregation { round: 3 },
            RunPhase::CheckpointFile {
                round: 3,
                file: "client_1.safetensors".into(),
            },
            RunPhase::CheckpointRename { round: 3 },
        ]
        .map(|p| p.to_string());
        assert_eq!(
            labels,
            [
                "training:3:1",
                "aggregation:3",
                "checkpoint-file:3:client_1.safetensors",
                "checkpoint-rename:3"
            ]
        );
    }
}

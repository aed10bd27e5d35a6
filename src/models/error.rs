use thiserror::Error;

/// Why a checkpoint could not be loaded into a model.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// The file could not be read or parsed.
    #[error("cannot read weights from {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

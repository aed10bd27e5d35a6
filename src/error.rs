//! The crate's error type.

use thiserror::Error;

use crate::data::DataError;
use crate::metrics::MetricsError;
use crate::models::WeightsError;
use crate::params::PayloadError;
use crate::partition::PartitionError;

/// Every fallible operation of the crate returns this error.
#[derive(Debug, Error)]
pub enum FedError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field or argument.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A layer cannot be wrapped in an adapter (for example a 3x3 convolution).
    #[error("unsupported layer: {0}")]
    UnsupportedLayer(String),
    /// A payload could not be encoded, decoded or applied.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// A client update was rejected by the server.
    #[error("update from client {client} rejected: {source}")]
    RejectedUpdate {
        /// The client whose update was rejected.
        client: usize,
        /// Why it was rejected.
        #[source]
        source: PayloadError,
    },
    /// A partitioner received bad arguments.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// Metrics received inconsistent inputs.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A checkpoint could not be loaded into a model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// A dataset could not be read or downloaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// JSON (reports, checkpoints) could not be written or read.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
    /// An error raised by user code (a [`crate::federated::FederatedTask`] implementation).
    #[error("task error: {0}")]
    Task(String),
}

impl FedError {
    /// Builds an [`FedError::InvalidConfig`].
    pub fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Builds an [`FedError::Io`] naming the path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Shorthand for `Result<T, FedError>`.
pub type Result<T, E = FedError> = std::result::Result<T, E>;

//! The one error type of the Flower layer.

/// Everything that can go wrong talking to a Flower SuperLink or decoding what it sends.
///
/// Nothing a server sends panics the node: malformed input becomes one of these.
#[derive(Debug, thiserror::Error)]
pub enum FlowerError {
    /// The SuperLink answered an RPC with a non-200 status (4xx, or 5xx after all retries).
    #[error("{rpc}: HTTP {status}: {body}")]
    Http {
        /// The RPC name, e.g. `pull-messages`.
        rpc: String,
        /// The HTTP status code.
        status: u16,
        /// The start of the (JSON) error body.
        body: String,
    },
    /// The SuperLink rejected the node's identity (HTTP 401 or 412).
    #[error("{rpc}: authentication failed (HTTP {status}): {body}")]
    Auth {
        /// The RPC name.
        rpc: String,
        /// 401 or 412.
        status: u16,
        /// The start of the error body.
        body: String,
    },
    /// The connection failed (refused, reset, timed out, TLS) after all retries.
    #[error("{rpc}: transport error: {message}")]
    Transport {
        /// The RPC name.
        rpc: String,
        /// What the HTTP client said.
        message: String,
    },
    /// Bytes that do not decode as what they should be.
    #[error("cannot decode {what}: {detail}")]
    Decode {
        /// What was being decoded, e.g. `pull-messages response` or `Array object abc…`.
        what: String,
        /// Why it failed.
        detail: String,
    },
    /// An object's content does not hash to its id.
    #[error("object id mismatch: expected {expected}, content hashes to {found}")]
    ObjectId {
        /// The id the object was requested or referenced by.
        expected: String,
        /// The sha256 of the bytes received.
        found: String,
    },
    /// An object the message tree refers to is missing.
    #[error("object {0} is missing")]
    MissingObject(String),
    /// A `.npy` file that cannot be read (or an array that cannot be written).
    #[error("npy: {0}")]
    Npy(String),
    /// An array whose shape and values disagree, or an unsupported dtype.
    #[error("array `{name}`: {detail}")]
    Array {
        /// The array's name in its record.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A key that cannot be loaded or used to sign.
    #[error("key: {0}")]
    Key(String),
    /// The SuperLink broke the protocol (e.g. a pull-messages answer without a tree).
    #[error("protocol: {0}")]
    Protocol(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("signal handler: {0}")]
    Signal(std::io::Error),
}

impl FlowerError {
    /// A [`FlowerError::Decode`].
    pub(crate) fn decode(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        FlowerError::Decode {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// Whether retrying the same request may succeed (connection problems and 5xx answers).
    pub fn is_transient(&self) -> bool {
        match self {
            FlowerError::Transport { .. } => true,
            FlowerError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

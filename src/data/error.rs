use thiserror::Error;

/// Why a dataset could not be read or fetched.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file is malformed.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

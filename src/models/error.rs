use thiserror::Error;

/// Why a checkpoint could not be loaded into a model.
///
/// Keys are the checkpoint's names (torchvision's `state_dict` keys, such as
/// `features.0.1.running_var`), so an error can be looked up in the Python model directly.
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
    /// The model needs a tensor the checkpoint does not have.
    #[error("{path}: missing key `{key}`{}", others_note(*.others))]
    MissingKey {
        /// The file.
        path: String,
        /// The first missing key (in sorted order).
        key: String,
        /// How many more keys are missing.
        others: usize,
    },
    /// The checkpoint has a tensor the model has no place for.
    #[error("{path}: unexpected key `{key}`{}", others_note(*.others))]
    UnexpectedKey {
        /// The file.
        path: String,
        /// The first unexpected key (in sorted order).
        key: String,
        /// How many more keys are unexpected.
        others: usize,
    },
    /// A tensor of the checkpoint does not have the shape the model expects.
    ///
    /// Shapes are in burn's layout: a linear layer's weight is `[in, out]`, the transpose of
    /// PyTorch's `[out, in]`.
    #[error("{path}: `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: String,
        /// The checkpoint key.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape found in the checkpoint.
        found: Vec<usize>,
    },
    /// A tensor of the checkpoint could not be converted (wrong data type, corrupt data).
    #[error("{path}: cannot load `{key}`: {reason}")]
    BadTensor {
        /// The file.
        path: String,
        /// The checkpoint key.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// The model configuration the checkpoint was to be loaded into is invalid.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
}

fn others_note(others: usize) -> String {
    match others {
        0 => String::new(),
        n => format!(" (and {n} more)"),
    }
}

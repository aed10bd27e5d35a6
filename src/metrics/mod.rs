//! Evaluation metrics over plain predictions and targets (no tensors).
//!
//! [`classification_metrics`] and [`ConfusionMatrix`] compute accuracy and
//! macro-averaged precision / recall / F1 following scikit-learn's
//! `average="macro", zero_division=0` convention; [`token_metrics`] and
//! [`masked_mean_loss`] do the same for sequence models while skipping ignored
//! (padding / prompt) positions; [`mean_metrics`] averages per-client results.
//! [`answers`] scores generated answers: VQA-normalised exact match, token F1 and VQA accuracy.

pub mod answers;
mod classification;
mod tokens;

pub use answers::{
    AnswerMetrics, AnswerScore, answer_metrics, exact_match, mean_answer_metrics, normalize_answer,
    token_f1, vqa_accuracy, weighted_mean_answer_metrics,
};
pub use classification::{
    ClassificationMetrics, ConfusionMatrix, classification_metrics, mean_metrics,
    weighted_mean_metrics,
};
pub use tokens::{masked_loss_sum, masked_mean_loss, token_metrics};

use thiserror::Error;

/// Invalid metric inputs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetricsError {
    /// Two parallel inputs have different lengths.
    #[error("length mismatch: {left} has {left_len} elements but {right} has {right_len}")]
    LengthMismatch {
        /// Name of the first input.
        left: &'static str,
        /// Its length.
        left_len: usize,
        /// Name of the second input.
        right: &'static str,
        /// Its length.
        right_len: usize,
    },
    /// A label is not below `num_classes`.
    #[error("{argument} label {label} is out of range for num_classes = {num_classes}")]
    LabelOutOfRange {
        /// `"prediction"` or `"target"`.
        argument: &'static str,
        /// The offending label.
        label: usize,
        /// The number of classes.
        num_classes: usize,
    },
    /// No (unmasked) element to compute a value from.
    #[error("{argument} has no (unmasked) elements; the metric is undefined")]
    Empty {
        /// Name of the empty input.
        argument: &'static str,
    },
    /// Two confusion matrices of different sizes were merged.
    #[error("cannot merge a {other}-class confusion matrix into a {this}-class one")]
    ClassCountMismatch {
        /// Classes of the receiving matrix.
        this: usize,
        /// Classes of the merged matrix.
        other: usize,
    },
}

/// Checks that two parallel inputs have the same length.
pub(crate) fn check_lengths(
    left: &'static str,
    left_len: usize,
    right: &'static str,
    right_len: usize,
) -> Result<(), MetricsError> {
    if left_len == right_len {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            left,
            left_len,
            right,
            right_len,
        })
    }
}

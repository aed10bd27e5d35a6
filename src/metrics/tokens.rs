//! Token-level metrics for sequence models, skipping ignored positions.

use super::{ClassificationMetrics, MetricsError, check_lengths, classification_metrics};

/// [`classification_metrics`] over the positions whose target is not `ignore_index`
/// (padding, prompt tokens, …). Predictions at ignored positions are not inspected.
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::LabelOutOfRange`] for a kept
/// position, and [`MetricsError::Empty`] when every position is ignored.
pub fn token_metrics(
    predictions: &[usize],
    targets: &[usize],
    ignore_index: usize,
    num_classes: usize,
    loss_sum: f64,
    loss_count: usize,
) -> Result<ClassificationMetrics, MetricsError> {
    check_lengths("predictions", predictions.len(), "targets", targets.len())?;
    let (kept_predictions, kept_targets): (Vec<usize>, Vec<usize>) = predictions
        .iter()
        .zip(targets)
        .filter(|&(_, &t)| t != ignore_index)
        .map(|(&p, &t)| (p, t))
        .unzip();
    if kept_targets.is_empty() {
        return Err(MetricsError::Empty {
            argument: "targets",
        });
    }
    classification_metrics(
        &kept_predictions,
        &kept_targets,
        num_classes,
        loss_sum,
        loss_count,
    )
}

/// `(Σ losses[i], count)` over positions with `targets[i] != ignore_index`, ready to be
/// accumulated across batches and passed as `loss_sum` / `loss_count`.
///
/// # Errors
/// [`MetricsError::LengthMismatch`].
pub fn masked_loss_sum(
    losses: &[f64],
    targets: &[usize],
    ignore_index: usize,
) -> Result<(f64, usize), MetricsError> {
    check_lengths("losses", losses.len(), "targets", targets.len())?;
    Ok(losses
        .iter()
        .zip(targets)
        .filter(|&(_, &t)| t != ignore_index)
        .fold((0.0, 0), |(sum, n), (&l, _)| (sum + l, n + 1)))
}

/// Mean of the per-position `losses` whose target is not `ignore_index`.
///
/// # Errors
/// [`MetricsError::LengthMismatch`], and [`MetricsError::Empty`] when every position is
/// ignored.
pub fn masked_mean_loss(
    losses: &[f64],
    targets: &[usize],
    ignore_index: usize,
) -> Result<f64, MetricsError> {
    let (sum, count) = masked_loss_sum(losses, targets, ignore_index)?;
    if count == 0 {
        return Err(MetricsError::Empty {
            argument: "targets",
        });
    }
    Ok(sum / count as f64)
}

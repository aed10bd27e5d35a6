//! Confusion-matrix based classification metrics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MetricsError, check_lengths};

/// Accuracy, macro precision / recall / F1 and mean loss over `count` examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Fraction of correct predictions, `trace(M) / count`.
    pub accuracy: f64,
    /// Macro-averaged precision.
    pub precision: f64,
    /// Macro-averaged recall.
    pub recall: f64,
    /// Macro-averaged F1 (mean of the per-class F1 scores).
    pub f1: f64,
    /// `loss_sum / loss_count`, or `0.0` when `loss_count == 0`.
    pub loss: f64,
    /// Number of examples the classification figures were computed over.
    pub count: usize,
}

/// `num_classes × num_classes` counts, `M[target][prediction]` (rows are true labels,
/// columns predictions, as in scikit-learn), stored sparsely: only the pairs that occur take
/// memory, so a language model's vocabulary (51,289 classes for Florence-2) costs what its
/// evaluation produced, not `num_classes²`. Accumulate over batches with
/// [`add`](Self::add) / [`add_batch`](Self::add_batch), combine with
/// [`merge`](Self::merge), then call [`metrics`](Self::metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// `counts[target][prediction]`, only non-zero entries.
    counts: BTreeMap<usize, BTreeMap<usize, u64>>,
}

impl ConfusionMatrix {
    /// An all-zero matrix for `num_classes` classes.
    #[must_use]
    pub fn new(num_classes: usize) -> Self {
        Self {
            num_classes,
            counts: BTreeMap::new(),
        }
    }

    /// Number of classes.
    #[must_use]
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Count of examples with true label `target` predicted as `prediction`
    /// (0 when either is out of range).
    #[must_use]
    pub fn get(&self, target: usize, prediction: usize) -> u64 {
        self.counts
            .get(&target)
            .and_then(|row| row.get(&prediction))
            .copied()
            .unwrap_or(0)
    }

    /// Total number of recorded examples.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.values().flat_map(BTreeMap::values).sum()
    }

    /// Records one example.
    ///
    /// # Errors
    /// [`MetricsError::LabelOutOfRange`] if either label is `>= num_classes`.
    pub fn add(&mut self, prediction: usize, target: usize) -> Result<(), MetricsError> {
        let num_classes = self.num_classes;
        for (argument, label) in [("prediction", prediction), ("target", target)] {
            if label >= num_classes {
                return Err(MetricsError::LabelOutOfRange {
                    argument,
                    label,
                    num_classes,
                });
            }
        }
        *self
            .counts
            .entry(target)
            .or_default()
            .entry(prediction)
            .or_default() += 1;
        Ok(())
    }

    /// Records a batch of examples. The matrix is left unchanged on error.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] or [`MetricsError::LabelOutOfRange`].
    pub fn add_batch(
        &mut self,
        predictions: &[usize],
        targets: &[usize],
    ) -> Result<(), MetricsError> {
        check_lengths("predictions", predictions.len(), "targets", targets.len())?;
        let mut batch = Self::new(self.num_classes);
        for (&p, &t) in predictions.iter().zip(targets) {
            batch.add(p, t)?;
        }
        self.merge(&batch)
    }

    /// Adds `other`'s counts to `self`.
    ///
    /// # Errors
    /// [`MetricsError::ClassCountMismatch`] when the class counts differ.
    pub fn merge(&mut self, other: &Self) -> Result<(), MetricsError> {
        if other.num_classes != self.num_classes {
            return Err(MetricsError::ClassCountMismatch {
                this: self.num_classes,
                other: other.num_classes,
            });
        }
        for (&target, row) in &other.counts {
            let mine = self.counts.entry(target).or_default();
            for (&prediction, &count) in row {
                *mine.entry(prediction).or_default() += count;
            }
        }
        Ok(())
    }

    /// Accuracy and macro metrics of the recorded examples, with
    /// `loss = loss_sum / loss_count` (`0.0` if `loss_count == 0`).
    ///
    /// Per class `c` with `tp = M[c][c]`, `fp = Σ_t M[t][c] − tp`, `fn = Σ_p M[c][p] − tp`:
    /// `precision_c = tp / (tp + fp)`, `recall_c = tp / (tp + fn)`,
    /// `f1_c = 2·precision_c·recall_c / (precision_c + recall_c)`, each `0` when its
    /// denominator is `0` (scikit-learn `zero_division=0`). The macro figures are the
    /// unweighted means over the classes present in the targets **or** the predictions
    /// (scikit-learn's default `labels`); classes absent from both are ignored.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] when no example was recorded.
    pub fn metrics(
        &self,
        loss_sum: f64,
        loss_count: usize,
    ) -> Result<ClassificationMetrics, MetricsError> {
        let total = self.total();
        if total == 0 {
            return Err(MetricsError::Empty {
                argument: "confusion matrix",
            });
        }
        // Per class: (true count, predicted count, true positives), classes that occur only.
        let mut per_class: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
        for (&target, row) in &self.counts {
            for (&prediction, &count) in row {
                per_class.entry(target).or_default().0 += count;
                per_class.entry(prediction).or_default().1 += count;
                if target == prediction {
                    per_class.entry(target).or_default().2 += count;
                }
            }
        }
        let mut correct = 0u64;
        let (mut precision, mut recall, mut f1) = (0.0, 0.0, 0.0);
        for &(true_c, pred_c, tp) in per_class.values() {
            correct += tp;
            let p = ratio(tp, pred_c);
            let r = ratio(tp, true_c);
            precision += p;
            recall += r;
            f1 += if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
        }
        // At least one class occurs because `total > 0`.
        let classes = per_class.len() as f64;
        Ok(ClassificationMetrics {
            accuracy: correct as f64 / total as f64,
            precision: precision / classes,
            recall: recall / classes,
            f1: f1 / classes,
            loss: mean_loss(loss_sum, loss_count),
            count: usize::try_from(total).unwrap_or(usize::MAX),
        })
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

fn mean_loss(loss_sum: f64, loss_count: usize) -> f64 {
    if loss_count == 0 {
        0.0
    } else {
        loss_sum / loss_count as f64
    }
}

/// Metrics of `predictions` against `targets` over `num_classes` classes; see
/// [`ConfusionMatrix::metrics`] for the definitions.
///
/// # Errors
/// [`MetricsError::LengthMismatch`], [`MetricsError::LabelOutOfRange`] and
/// [`MetricsError::Empty`] for empty inputs.
pub fn classification_metrics(
    predictions: &[usize],
    targets: &[usize],
    num_classes: usize,
    loss_sum: f64,
    loss_count: usize,
) -> Result<ClassificationMetrics, MetricsError> {
    let mut matrix = ConfusionMatrix::new(num_classes);
    matrix.add_batch(predictions, targets)?;
    matrix.metrics(loss_sum, loss_count)
}

/// Unweighted mean over clients of every figure (each client counts once, as in
/// per-client reporting); `count` is the sum. `None` for an empty slice.
#[must_use]
pub fn mean_metrics(per_client: &[ClassificationMetrics]) -> Option<ClassificationMetrics> {
    weighted_mean(per_client, |_| 1.0)
}

/// Mean over clients weighted by each client's `count` (equivalent to pooling the
/// examples for accuracy); `count` is the sum. `None` for an empty slice or when every
/// count is zero.
#[must_use]
pub fn weighted_mean_metrics(
    per_client: &[ClassificationMetrics],
) -> Option<ClassificationMetrics> {
    weighted_mean(per_client, |m| m.count as f64)
}

fn weighted_mean(
    items: &[ClassificationMetrics],
    weight: impl Fn(&ClassificationMetrics) -> f64,
) -> Option<ClassificationMetrics> {
    let total: f64 = items.iter().map(&weight).sum();
    if items.is_empty() || total <= 0.0 {
        return None;
    }
    let mean = |field: fn(&ClassificationMetrics) -> f64| {
        items.iter().map(|m| weight(m) * field(m)).sum::<f64>() / total
    };
    Some(ClassificationMetrics {
        accuracy: mean(|m| m.accuracy),
        precision: mean(|m| m.precision),
        recall: mean(|m| m.recall),
        f1: mean(|m| m.f1),
        loss: mean(|m| m.loss),
        count: items.iter().map(|m| m.count).sum(),
    })
}

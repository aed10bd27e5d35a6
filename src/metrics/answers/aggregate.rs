//! Answer-level metrics of a set of generated answers, and their means across clients.

use serde::{Deserialize, Serialize};

use super::score::{exact_match, token_f1, vqa_accuracy};
use crate::metrics::{MetricsError, check_lengths};

/// The scores of one generated answer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnswerScore {
    /// [`exact_match`] with the reference.
    pub exact_match: bool,
    /// [`token_f1`] with the reference.
    pub token_f1: f64,
    /// [`vqa_accuracy`] against the human answers, when the sample has some.
    pub vqa_accuracy: Option<f64>,
}

impl AnswerScore {
    /// Scores `prediction` against `reference` and, when `human_answers` is not empty, against
    /// those (VQA accuracy).
    #[must_use]
    pub fn new(prediction: &str, reference: &str, human_answers: &[String]) -> Self {
        Self {
            exact_match: exact_match(prediction, reference),
            token_f1: token_f1(prediction, reference),
            vqa_accuracy: vqa_accuracy(prediction, human_answers).ok(),
        }
    }
}

/// Mean answer-level scores over `count` generated answers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnswerMetrics {
    /// Fraction of answers equal to the reference after VQA normalisation.
    pub exact_match: f64,
    /// Mean SQuAD-style token F1 with the reference.
    pub token_f1: f64,
    /// Mean VQA accuracy over the `vqa_count` answers whose sample has human answers; `None`
    /// when none has.
    pub vqa_accuracy: Option<f64>,
    /// Answers scored.
    pub count: usize,
    /// Answers with human answers (the VQA accuracy's denominator).
    pub vqa_count: usize,
}

impl AnswerMetrics {
    /// The means of `scores`.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] when `scores` is empty.
    pub fn from_scores(scores: &[AnswerScore]) -> Result<Self, MetricsError> {
        if scores.is_empty() {
            return Err(MetricsError::Empty { argument: "scores" });
        }
        let n = scores.len() as f64;
        let vqa: Vec<f64> = scores.iter().filter_map(|s| s.vqa_accuracy).collect();
        Ok(Self {
            exact_match: scores.iter().filter(|s| s.exact_match).count() as f64 / n,
            token_f1: scores.iter().map(|s| s.token_f1).sum::<f64>() / n,
            vqa_accuracy: (!vqa.is_empty()).then(|| vqa.iter().sum::<f64>() / vqa.len() as f64),
            count: scores.len(),
            vqa_count: vqa.len(),
        })
    }
}

/// Answer-level metrics of `predictions` against `references`; `human_answers` is either empty
/// (no sample has human answers) or holds one list per prediction (an empty list: none for that
/// sample).
///
/// ```
/// use fedvlm::metrics::answer_metrics;
/// let predictions = ["Two.".to_string(), "a cat".to_string()];
/// let references = ["2".to_string(), "dog".to_string()];
/// let m = answer_metrics(&predictions, &references, &[]).unwrap();
/// assert_eq!((m.exact_match, m.token_f1, m.vqa_accuracy, m.count), (0.5, 0.5, None, 2));
/// ```
///
/// # Errors
/// [`MetricsError::LengthMismatch`] when the lists differ in length, [`MetricsError::Empty`]
/// when there is no prediction.
pub fn answer_metrics(
    predictions: &[String],
    references: &[String],
    human_answers: &[Vec<String>],
) -> Result<AnswerMetrics, MetricsError> {
    check_lengths(
        "predictions",
        predictions.len(),
        "references",
        references.len(),
    )?;
    if !human_answers.is_empty() {
        check_lengths(
            "predictions",
            predictions.len(),
            "human_answers",
            human_answers.len(),
        )?;
    }
    let scores: Vec<AnswerScore> = predictions
        .iter()
        .zip(references)
        .enumerate()
        .map(|(i, (p, r))| {
            let humans = human_answers.get(i).map_or(&[][..], Vec::as_slice);
            AnswerScore::new(p, r, humans)
        })
        .collect();
    AnswerMetrics::from_scores(&scores)
}

/// Unweighted mean over clients (every client counts the same, as the paper's tables average
/// clients); the VQA accuracy over the clients that have one. `None` for no client.
#[must_use]
pub fn mean_answer_metrics(per_client: &[AnswerMetrics]) -> Option<AnswerMetrics> {
    weighted(per_client, |_| 1.0, |_| 1.0)
}

/// Mean over clients weighted by their answer counts (the same as pooling the answers). `None`
/// for no client or no answer.
#[must_use]
pub fn weighted_mean_answer_metrics(per_client: &[AnswerMetrics]) -> Option<AnswerMetrics> {
    weighted(per_client, |m| m.count as f64, |m| m.vqa_count as f64)
}

fn weighted(
    items: &[AnswerMetrics],
    weight: impl Fn(&AnswerMetrics) -> f64,
    vqa_weight: impl Fn(&AnswerMetrics) -> f64,
) -> Option<AnswerMetrics> {
    let total: f64 = items.iter().map(&weight).sum();
    if items.is_empty() || total <= 0.0 {
        return None;
    }
    let mean = |field: fn(&AnswerMetrics) -> f64| {
        items.iter().map(|m| weight(m) * field(m)).sum::<f64>() / total
    };
    let with_vqa: Vec<(f64, f64)> = items
        .iter()
        .filter_map(|m| m.vqa_accuracy.map(|v| (vqa_weight(m), v)))
        .collect();
    let vqa_total: f64 = with_vqa.iter().map(|(w, _)| w).sum();
    Some(AnswerMetrics {
        exact_match: mean(|m| m.exact_match),
        token_f1: mean(|m| m.token_f1),
        vqa_accuracy: (vqa_total > 0.0)
            .then(|| with_vqa.iter().map(|(w, v)| w * v).sum::<f64>() / vqa_total),
        count: items.iter().map(|m| m.count).sum(),
        vqa_count: items.iter().map(|m| m.vqa_count).sum(),
    })
}

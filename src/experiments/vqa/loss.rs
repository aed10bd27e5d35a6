//! The training loss (the paper's equation 1) and the teacher-forced token-level scores.
//!
//! Teacher-forced cross-entropy over the answer tokens: `-log p(y_t | y_<t, image, prompt)`
//! summed over every label that is not [`IGNORE_INDEX`] and divided by their number, over the
//! whole batch: transformers' `CrossEntropyLoss(ignore_index=-100)` with mean reduction.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use super::sample::{BOS_ID, IGNORE_INDEX};
use crate::error::{FedError, Result};
use crate::federated::EvalBatch;

/// Per-token negative log-likelihoods `[N, T]` of `labels` `[N, T]` under `logits`
/// `[N, T, vocab]`, zero where the label is [`IGNORE_INDEX`].
///
/// # Errors
/// [`FedError::InvalidConfig`] when the shapes disagree.
pub fn token_nll<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 2>> {
    let [n, t, _] = logits.dims();
    if labels.dims() != [n, t] {
        return Err(FedError::config(
            "labels",
            format!("have shape {:?}, the logits {:?}", labels.dims(), [n, t]),
        ));
    }
    let keep = labels.clone().not_equal_elem(IGNORE_INDEX).float();
    let index = labels.clamp_min(0).unsqueeze_dim::<3>(2);
    let picked = log_softmax(logits, 2).gather(2, index).reshape([n, t]);
    Ok(picked.neg() * keep)
}

/// Number of labels that are not [`IGNORE_INDEX`].
pub fn count_kept<B: Backend>(labels: &Tensor<B, 2, Int>) -> usize {
    let kept: i64 = labels
        .clone()
        .not_equal_elem(IGNORE_INDEX)
        .int()
        .sum()
        .into_scalar()
        .elem();
    kept.max(0) as usize
}

/// The mean cross-entropy over the kept labels of the batch (a one-element tensor that
/// gradients flow through).
///
/// # Errors
/// [`FedError::InvalidConfig`] when the shapes disagree or every label is ignored.
pub fn masked_cross_entropy<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Result<Tensor<B, 1>> {
    let kept = count_kept(&labels);
    if kept == 0 {
        return Err(FedError::config("labels", "every label is ignored"));
    }
    Ok(token_nll(logits, labels)?.sum().div_scalar(kept as f64))
}

/// Scores one batch: the summed token loss over every kept label (the training loss's
/// positions) and, for the token-level scores ([`crate::metrics::ConfusionMatrix`]), the
/// arg-max token and the label at every kept position except a leading `<s>`
/// ([`BOS_ID`] as the first label): the decoder is always given `</s>` and `<s>` is always the
/// first label, so it would count as a free correct token. Padding is removed.
///
/// # Errors
/// As [`token_nll`], and [`FedError::Task`] when reading the tensors back fails.
pub fn score_tokens<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Result<EvalBatch> {
    let steps = labels.dims()[1].max(1);
    let predictions = ints(logits.clone().argmax(2).flatten::<1>(0, 2))?;
    let targets = ints(labels.clone().flatten::<1>(0, 1))?;
    let loss_sum: f64 = token_nll(logits, labels)?.sum().into_scalar().elem();
    let loss_count = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    let (predictions, targets): (Vec<usize>, Vec<usize>) = predictions
        .into_iter()
        .zip(targets)
        .enumerate()
        .filter(|&(i, (_, t))| {
            t != IGNORE_INDEX && !(i.is_multiple_of(steps) && t == i64::from(BOS_ID))
        })
        .map(|(_, (p, t))| (p as usize, t as usize))
        .unzip();
    Ok(EvalBatch {
        loss_sum,
        loss_count,
        predictions,
        targets,
    })
}

fn ints<B: Backend>(t: Tensor<B, 1, Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .map_err(|e| FedError::Task(format!("{e:?}")))
}

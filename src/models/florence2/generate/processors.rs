//! Host-side score processing, as transformers' logits processors do it (in its order:
//! no-repeat n-gram, forced BOS, forced EOS), plus `log_softmax` and a top-k with a fixed tie
//! order.

use std::cmp::Ordering;

use super::config::GenerationConfig;

/// Applies the processors to one row of scores (`[vocab]`) for a sequence `seq` (its
/// `cur_len = seq.len()` ids so far), with `max_length` = prompt length + `max_new_tokens`.
pub(crate) fn process(
    scores: &mut [f32],
    seq: &[u32],
    max_length: usize,
    config: &GenerationConfig,
) {
    let cur_len = seq.len();
    let n = config.no_repeat_ngram_size;
    if n > 0 && cur_len >= n {
        // Every complete n-gram whose first n-1 tokens equal the last n-1 tokens bans its
        // last token (transformers' NoRepeatNGramLogitsProcessor).
        let prefix = &seq[cur_len + 1 - n..];
        for window in seq.windows(n) {
            if &window[..n - 1] == prefix
                && let Some(score) = scores.get_mut(window[n - 1] as usize)
            {
                *score = f32::NEG_INFINITY;
            }
        }
    }
    if let Some(bos) = config.forced_bos_token_id
        && cur_len == 1
    {
        force(scores, bos);
    }
    if let Some(eos) = config.forced_eos_token_id
        && cur_len + 1 == max_length
    {
        force(scores, eos);
    }
}

/// Every score `-inf` except `token`'s, which becomes 0.
fn force(scores: &mut [f32], token: u32) {
    scores.fill(f32::NEG_INFINITY);
    if let Some(score) = scores.get_mut(token as usize) {
        *score = 0.0;
    }
}

/// `x - max - ln(sum(exp(x - max)))`, in f32 as torch computes it.
pub(crate) fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let log_sum = sum.ln();
    for x in row.iter_mut() {
        *x = *x - max - log_sum;
    }
}

/// Index of the first maximum (torch's `argmax`).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// The `k` largest values with their indices, largest first; equal values keep index order.
pub(crate) fn top_k(values: impl IntoIterator<Item = f32>, k: usize) -> Vec<(f32, usize)> {
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (i, v) in values.into_iter().enumerate() {
        if top.len() == k && v.partial_cmp(&top[k - 1].0) != Some(Ordering::Greater) {
            continue;
        }
        // Insert after every entry >= v (stable for ties).
        let pos = top.iter().position(|&(t, _)| v > t).unwrap_or(top.len());
        top.insert(pos, (v, i));
        top.truncate(k);
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_keeps_ties_in_index_order() {
        let top = top_k([1.0, 3.0, 3.0, -1.0, 2.0], 3);
        assert_eq!(top, vec![(3.0, 1), (3.0, 2), (2.0, 4)]);
    }

    #[test]
    fn no_repeat_ngram_bans_completions() {
        let config = GenerationConfig {
            no_repeat_ngram_size: 2,
            forced_bos_token_id: None,
            forced_eos_token_id: None,
            ..GenerationConfig::default()
        };
        let mut scores = vec![0.0; 5];
        // "1 2 3 1": the bigram (1, 2) exists, so 2 is banned after the final 1.
        process(&mut scores, &[1, 2, 3, 1], 100, &config);
        assert_eq!(scores[2], f32::NEG_INFINITY);
        assert_eq!(scores.iter().filter(|s| s.is_infinite()).count(), 1);
    }
}

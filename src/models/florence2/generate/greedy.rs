//! Greedy decoding (transformers' `_sample` without sampling).

use super::config::GenerationConfig;
use super::processors::{argmax, process};
use super::stepper::Stepper;
use crate::error::Result;
use burn::prelude::*;

/// Appends the arg-max token to every sequence until each has ended (end-of-sequence token)
/// or reached `max_length` ids; ended sequences are padded while others continue.
pub(crate) fn greedy<B: Backend>(
    stepper: &mut Stepper<'_, B>,
    batch: usize,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let max_length = config.max_new_tokens + 1;
    let pad = config.effective_pad_token_id().unwrap_or(0);
    let mut sequences = vec![vec![config.decoder_start_token_id]; batch];
    let mut unfinished = vec![true; batch];
    loop {
        let logits = stepper.next_logits(&sequences)?;
        for ((seq, mut scores), running) in sequences.iter_mut().zip(logits).zip(&mut unfinished) {
            process(&mut scores, seq, max_length, config);
            let mut next = argmax(&scores) as u32;
            if config.eos_token_id.is_some() && !*running {
                next = pad;
            }
            seq.push(next);
            let ended = seq.len() >= max_length || config.eos_token_id == Some(next);
            *running = *running && !ended;
        }
        if !unfinished.iter().any(|&r| r) {
            return Ok(sequences);
        }
    }
}

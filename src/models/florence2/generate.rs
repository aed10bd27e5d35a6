//! Text generation with the BART decoder, producing the token ids transformers 5.24's
//! `generate` produces for an encoder-decoder: greedy decoding or beam search (length-normalised
//! hypotheses, early stopping, no repeated n-grams, forced first and last tokens), each step
//! feeding one token through the key/value cache.
//!
//! Outputs start with the decoder start token; sequences that ended early are padded (with
//! `pad_token_id`) to the longest one, as transformers pads them.

mod beam;
mod config;
mod greedy;
mod processors;
mod stepper;

use burn::prelude::*;

pub use config::{EarlyStopping, GenerationConfig};

use crate::error::{FedError, Result};
use crate::models::florence2::bart::BartModel;
use stepper::{Stepper, repeat_rows};

/// Generates token ids from the encoder output (`[N, S, d]`, with its `[N, S]` attention mask:
/// 1 = attend, 0 = padding): greedy when `config.num_beams == 1`, beam search otherwise.
/// Returns `N` sequences of equal length (at most `max_new_tokens + 1` ids), each starting with
/// `decoder_start_token_id`.
///
/// # Errors
/// [`FedError::InvalidConfig`] for invalid settings ([`GenerationConfig::validate_for`]), an
/// encoder output of another width than the model's, a mask of another shape, or more
/// positions than the decoder has.
pub fn generate<B: Backend>(
    model: &BartModel<B>,
    encoder_hidden: Tensor<B, 3>,
    encoder_mask: Option<Tensor<B, 2, Int>>,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    config.validate_for(model.vocab_size())?;
    let [n, s, d] = encoder_hidden.dims();
    if d != model.d_model() {
        return Err(FedError::config(
            "encoder_hidden",
            format!("has width {d}, the model {}", model.d_model()),
        ));
    }
    if let Some(mask) = &encoder_mask
        && mask.dims() != [n, s]
    {
        return Err(FedError::config(
            "encoder_mask",
            format!("has shape {:?}, expected {:?}", mask.dims(), [n, s]),
        ));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let beams = config.num_beams;
    let hidden = repeat_rows(encoder_hidden, beams);
    let mask = encoder_mask.map(|m| repeat_rows(m, beams));
    let mut stepper = Stepper::new(model, hidden, mask, config.use_cache);
    if beams == 1 {
        greedy::greedy(&mut stepper, n, config)
    } else {
        beam::beam_search(&mut stepper, n, config)
    }
}

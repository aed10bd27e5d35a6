//! A tiny randomly initialised Florence-2 for smoke runs and memory checks on any data,
//! offline: the shapes of `tests/fixtures/florence2/tiny_native` (DaViT 8/16/24/40 channels,
//! BART 32 wide, 2 + 2 layers, 64x64 images) with a vocabulary of 1728 that holds a bundled
//! stand-in tokenizer (`tiny/tokenizer.json`: the byte-level BPE tokenizer of
//! `tests/fixtures/florence2_text`, 701 tokens, plus Florence-2's 1024 added tokens). As
//! `scripts/make_random_florence2.py --size tiny` describes, without its dropouts (0 here).

use burn::prelude::*;

use super::config::Florence2Config;
use super::model::Florence2;
use super::pretrained::{Florence2Pipeline, PipelineError};
use super::processor::{Florence2Processor, ImageConfig};
use super::tokenizer::Florence2Tokenizer;
use crate::error::FedError;

/// The name `--model` takes for [`Florence2Pipeline::tiny_random`].
pub const TINY_RANDOM: &str = "tiny-random";

/// The tiny model's image side in pixels.
pub const TINY_IMAGE_SIZE: usize = 64;

const CONFIG: &str = include_str!("tiny/config.json");
const TOKENIZER: &[u8] = include_bytes!("tiny/tokenizer.json");

impl<B: Backend> Florence2Pipeline<B> {
    /// A tiny random Florence-2 (every weight drawn from `seed`: the backend's generator is
    /// seeded with it) with the bundled stand-in
    /// tokenizer and a 64x64 image processor: no file, no network, built in milliseconds.
    ///
    /// # Errors
    /// Never for the bundled files (the variants of [`Florence2Pipeline::new`]).
    pub fn tiny_random(seed: u64, device: &B::Device) -> Result<Self, PipelineError> {
        let (config, _) = Florence2Config::from_json(CONFIG)?;
        let tokenizer = Florence2Tokenizer::from_bytes(TOKENIZER)
            .map_err(|e| FedError::Task(format!("the bundled tokenizer: {e}")))?;
        let image = ImageConfig {
            height: TINY_IMAGE_SIZE,
            width: TINY_IMAGE_SIZE,
            ..ImageConfig::default()
        };
        let processor = Florence2Processor::new(tokenizer, image);
        // The vision side draws from the backend's generator: seed it too.
        B::seed(device, seed);
        let model = Florence2::new(&config, seed, device)?;
        Self::new(model, config, processor, device)
    }
}

//! Synthetic VQA samples for the task and cohort tests: random pixels and ids of varying
//! lengths, so that batches pad.
#![allow(dead_code)]

use fedvlm::experiments::vqa::VqaSample;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

/// `n` samples of `image`x`image` random pixels with `<s> ... </s>` ids below `vocab`:
/// prompts of 3..9 tokens, answers of 2..8 (so batches of different clients pad to different
/// lengths), both cut at 16.
pub fn synthetic_samples(n: usize, seed: u64, image: usize, vocab: usize) -> Vec<VqaSample> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let pixels = (0..3 * image * image)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let ids = |rng: &mut ChaCha8Rng, len: usize| {
                let mut v = vec![0u32];
                v.extend((0..len - 2).map(|_| rng.random_range(3..vocab as u32)));
                v.push(2);
                v
            };
            let len = rng.random_range(3..10);
            let prompt = ids(&mut rng, len);
            let len = rng.random_range(2..9);
            let answer = ids(&mut rng, len);
            VqaSample::new(pixels, image, &prompt, &answer, 16, 16).unwrap()
        })
        .collect()
}

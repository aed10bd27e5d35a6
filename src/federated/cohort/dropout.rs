//! Dropout masks drawn the way the sequential client draws them.
//!
//! A sequential client seeds burn's backend generator with `(seed, round, client, 2)` before it
//! trains, and every dropout layer then draws one Bernoulli sample per element of its input
//! from that generator, in the order the layers run. On burn's `Flex` CPU backend that
//! generator is a `StdRng` seeded with `seed_from_u64` and a Bernoulli sample is one `u64`
//! draw; [`DropoutStream`] is that generator's key stream, held per client, so a cohort
//! reproduces every client's masks exactly. On other backends the masks are different (the backends' own
//! generators), but drawn from the same distribution and just as reproducible.

use super::keystream::KeyStream;
use crate::seed::mix_seed;

/// `rand`'s `Bernoulli::new(p)` threshold: a draw `v` is `true` when `v < (p * 2^64) as u64`
/// (`u64::MAX`, always true, for `p = 1`).
fn bernoulli_threshold(p: f64) -> Option<u64> {
    const SCALE: f64 = 2.0 * (1u64 << 63) as f64;
    if p == 1.0 {
        Some(u64::MAX)
    } else if (0.0..1.0).contains(&p) {
        Some((p * SCALE) as u64)
    } else {
        None
    }
}

/// One client's stream of dropout masks for one round.
#[derive(Debug)]
pub struct DropoutStream {
    words: KeyStream,
}

impl DropoutStream {
    /// The stream of `client` in `round` of a run seeded with `seed`: the generator
    /// [`crate::federated::ClientRuntime::train`] seeds the backend with.
    pub fn for_client(seed: u64, round: u64, client: usize) -> Self {
        Self::new(mix_seed(&[seed, round, client as u64, 2]))
    }

    /// A stream seeded with `seed` as burn's `Flex` backend seeds its generator.
    pub fn new(seed: u64) -> Self {
        Self {
            words: KeyStream::new(seed),
        }
    }

    /// Writes the mask burn's `Dropout` with probability `prob` applies to an input of
    /// `out.len()` elements, scale included: each element is `1 / (1 - prob)` (kept) or 0.
    /// A probability of 0 draws nothing and keeps everything, as burn's layer does.
    pub fn fill(&mut self, out: &mut [f32], prob: f64) {
        if prob <= 0.0 {
            out.fill(1.0);
            return;
        }
        let keep = 1.0 - prob;
        let scale = (1.0 / keep) as f32;
        let Some(threshold) = bernoulli_threshold(keep) else {
            // A probability outside [0, 1]: burn's layer refuses it at construction.
            out.fill(0.0);
            return;
        };
        if threshold == u64::MAX {
            // `Bernoulli` answers `true` without drawing.
            out.fill(scale);
            return;
        }
        // `Bernoulli::sample` draws one `u64` per element and keeps it below the threshold.
        self.words.fill_below(out, threshold, scale);
    }
}

#[cfg(test)]
mod tests {
    use rand::distr::{Bernoulli, Distribution};
    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    /// The masks `Bernoulli::sample`, one draw at a time, gives.
    fn reference(seed: u64, lens: &[usize], prob: f64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let keep = Bernoulli::new(1.0 - prob).unwrap();
        let scale = (1.0 / (1.0 - prob)) as f32;
        let total: usize = lens.iter().sum();
        (0..total)
            .map(|_| if keep.sample(&mut rng) { scale } else { 0.0 })
            .collect()
    }

    #[test]
    fn bulk_masks_equal_one_bernoulli_draw_per_element() {
        // Odd lengths leave the generator in the middle of a block and of a 64-bit word pair.
        let lens = [3, 1001, 64, 7, 4096];
        for prob in [0.05, 0.2, 0.5, 1.0] {
            let mut stream = DropoutStream::new(11);
            let mut masks = Vec::new();
            for &len in &lens {
                let mut out = vec![-1.0; len];
                stream.fill(&mut out, prob);
                masks.extend(out);
            }
            let expected = reference(11, &lens, prob);
            assert_eq!(masks, expected, "p = {prob}");
            let dropped = masks.iter().filter(|&&m| m == 0.0).count() as f64;
            let rate = dropped / masks.len() as f64;
            assert!((rate - prob).abs() < 0.03, "p = {prob}: dropped {rate}");
        }
    }
}

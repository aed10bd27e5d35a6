//! Dropout masks drawn the way the sequential client draws them.
//!
//! A sequential client seeds burn's backend generator with `(seed, round, client, 2)` before it
//! trains, and every dropout layer then draws one Bernoulli sample per element of its input
//! from that generator, in the order the layers run. On burn's `Flex` CPU backend that
//! generator is a `StdRng` seeded with `seed_from_u64` and a Bernoulli sample is one `u64`
//! draw; [`DropoutStream`] is that generator, held per client, so a cohort reproduces every
//! client's masks exactly. On other backends the masks are different (the backends' own
//! generators), but drawn from the same distribution and just as reproducible.

use rand::SeedableRng;
use rand::distr::{Bernoulli, Distribution};
use rand::rngs::StdRng;

use crate::seed::mix_seed;

/// One client's stream of dropout masks for one round.
#[derive(Debug)]
pub struct DropoutStream {
    rng: StdRng,
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
            rng: StdRng::seed_from_u64(seed),
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
        match Bernoulli::new(keep) {
            Ok(bernoulli) => {
                for value in out.iter_mut() {
                    *value = if bernoulli.sample(&mut self.rng) {
                        scale
                    } else {
                        0.0
                    };
                }
            }
            // A probability outside [0, 1]: burn's layer refuses it at construction.
            Err(_) => out.fill(0.0),
        }
    }
}

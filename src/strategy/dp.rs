//! Central differential privacy with fixed clipping (Andrew et al. / McMahan et al. 2018): the
//! clipping of one update and the Gaussian noise on the aggregate, as Flower 1.42's
//! `flwr.supercore.differential_privacy` computes them.

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::params::Payload;

/// Settings of the fixed-clipping DP wrappers ([`super::DpFixedClipping`],
/// [`super::DpClientSideFixedClipping`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpConfig {
    /// The Gaussian noise's standard deviation in units of the per-client sensitivity
    /// (`>= 0`; 1.0 or more for meaningful privacy).
    pub noise_multiplier: f64,
    /// The L2 norm every update (`update - global`, whole model) is clipped to (`> 0`).
    pub clipping_norm: f64,
    /// Clients sampled per round: the noise's std is
    /// `noise_multiplier * clipping_norm / num_sampled_clients` (`>= 1`).
    pub num_sampled_clients: usize,
    /// Seed of the noise; round `t` draws from ChaCha8 seeded with `seed`, stream `t` (in blocks
    /// of 65,536 values at far-apart positions of the stream).
    pub seed: u64,
}

impl DpConfig {
    /// Checks the ranges Flower checks: `noise_multiplier >= 0`, `clipping_norm > 0`,
    /// `num_sampled_clients > 0` (and finiteness).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(FedError::config(
                "noise_multiplier",
                format!("must be >= 0, got {}", self.noise_multiplier),
            ));
        }
        if !(self.clipping_norm.is_finite() && self.clipping_norm > 0.0) {
            return Err(FedError::config(
                "clipping_norm",
                format!("must be > 0, got {}", self.clipping_norm),
            ));
        }
        if self.num_sampled_clients == 0 {
            return Err(FedError::config(
                "num_sampled_clients",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The noise's standard deviation, Flower's `compute_stdv`:
    /// `noise_multiplier * clipping_norm / num_sampled_clients`.
    pub fn noise_stdv(&self) -> f64 {
        self.noise_multiplier * self.clipping_norm / self.num_sampled_clients as f64
    }
}

/// Clips `update` towards `global` in place so that the whole-model L2 norm of
/// `update - global` is at most `clipping_norm`, and returns that norm before clipping.
///
/// Flower's `compute_clip_model_update` step by step: `d = update - global` in `f32`, the scale
/// `min(1, clipping_norm / |d|)`, then `update = global + d * scale` in `f32` (so even an update
/// within the norm is rewritten as `global + (update - global)`, as in Flower). The norm is
/// summed in `f64` where numpy sums `float32` squares, so the scale agrees with Flower's to
/// about `1e-7` relative. A zero update is left as it is (Flower divides by zero), a
/// non-positive or NaN `clipping_norm` clips the update to `global`, and tensors of `update`
/// that `global` lacks or whose length differs are left unclipped and out of the norm.
pub fn clip_update(update: &mut Payload, global: &Payload, clipping_norm: f64) -> f64 {
    let pairs = || {
        update.tensors.iter().filter_map(|(name, t)| {
            global
                .tensors
                .get(name)
                .filter(|g| g.values.len() == t.values.len())
                .map(|g| (t.values.as_slice(), g.values.as_slice()))
        })
    };
    let squares: f64 = pairs()
        .map(|(x, y)| {
            x.iter()
                .zip(y)
                .map(|(&x, &y)| {
                    let d = f64::from(x - y);
                    d * d
                })
                .sum::<f64>()
        })
        .sum();
    let norm = squares.sqrt();
    let scale = if clipping_norm.is_nan() || clipping_norm <= 0.0 {
        0.0
    } else if norm > 0.0 {
        (clipping_norm / norm).min(1.0)
    } else {
        1.0
    };
    let scale = scale as f32;
    for (name, t) in update.tensors.iter_mut() {
        let Some(g) = global
            .tensors
            .get(name)
            .filter(|g| g.values.len() == t.values.len())
        else {
            continue;
        };
        for (x, &y) in t.values.iter_mut().zip(&g.values) {
            *x = y + (*x - y) * scale;
        }
    }
    norm
}

/// Values per noise block: each block draws from its own, far-apart position of the stream.
const NOISE_BLOCK: usize = 1 << 16;

/// Adds `N(0, stdv^2)` noise to every value of `payload`, drawn in `f64` and rounded to `f32`
/// before the `f32` addition (Flower's `add_gaussian_noise_inplace`). The values, tensor by
/// tensor in name order, are cut into blocks of 65,536; block `b` draws from ChaCha8 seeded with
/// `seed`, stream `round`, starting at word `b * 2^36` (far beyond what a block consumes). So the
/// same seed and round give the same noise for any thread count, and blocks run in parallel.
/// A zero `stdv` adds zeros without drawing.
pub(crate) fn add_gaussian_noise(payload: &mut Payload, stdv: f64, seed: u64, round: u64) {
    if stdv == 0.0 {
        for t in payload.tensors.values_mut() {
            t.values.iter_mut().for_each(|x| *x += 0.0);
        }
        return;
    }
    let mut first_block = 0u64;
    for t in payload.tensors.values_mut() {
        let blocks = t.values.len().div_ceil(NOISE_BLOCK) as u64;
        t.values
            .par_chunks_mut(NOISE_BLOCK)
            .enumerate()
            .for_each(|(i, chunk)| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(round);
                rng.set_word_pos(u128::from(first_block + i as u64) << 36);
                for x in chunk.iter_mut() {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *x += (z * stdv) as f32;
                }
            });
        first_block += blocks;
    }
}

/// DP settings as a user gives them (`--dp-clip`, and `--dp-noise` or `--target-epsilon`),
/// resolved into a [`DpConfig`] once the federation's size is known.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpSettings {
    /// The L2 norm every update is clipped to.
    pub clipping_norm: f64,
    /// The noise multiplier; when `None`, the smallest one that keeps the whole run within
    /// `target_epsilon` (Opacus's `get_noise_multiplier` on the RDP accountant).
    pub noise_multiplier: Option<f64>,
    /// The epsilon the whole run may spend (at `delta = 1 / total training examples`).
    pub target_epsilon: Option<f64>,
    /// Clip on the clients ([`super::DpClientSideFixedClipping`]) instead of on the server.
    pub client_side: bool,
}

impl DpSettings {
    /// The [`DpConfig`] for `num_sampled_clients` clients a round out of `num_clients`, over
    /// `rounds` rounds, at `delta`, with noise seeded by `seed`.
    ///
    /// # Errors
    /// [`crate::FedError::InvalidConfig`] when neither or both of the noise multiplier and the
    /// target epsilon are given, or when the target cannot be met.
    pub fn resolve(
        &self,
        num_sampled_clients: usize,
        num_clients: usize,
        rounds: u64,
        delta: f64,
        seed: u64,
    ) -> crate::Result<DpConfig> {
        let noise_multiplier = match (self.noise_multiplier, self.target_epsilon) {
            (Some(noise), None) => noise,
            (None, Some(target)) => {
                let rate = num_sampled_clients as f64 / num_clients.max(1) as f64;
                crate::privacy::try_noise_multiplier_for(target, delta, rate, rounds, 0.01)?
            }
            _ => {
                return Err(crate::FedError::config(
                    "dp",
                    "give the noise multiplier (--dp-noise) or a target epsilon \
                     (--target-epsilon), not both",
                ));
            }
        };
        let config = DpConfig {
            noise_multiplier,
            clipping_norm: self.clipping_norm,
            num_sampled_clients: num_sampled_clients.max(1),
            seed,
        };
        config.validate()?;
        Ok(config)
    }

    /// Wraps `inner` in the DP strategy these settings ask for.
    pub fn wrap(
        &self,
        inner: Box<dyn super::Strategy>,
        config: DpConfig,
    ) -> Box<dyn super::Strategy> {
        if self.client_side {
            Box::new(super::DpClientSideFixedClipping::new(inner, config))
        } else {
            Box::new(super::DpFixedClipping::new(inner, config))
        }
    }
}

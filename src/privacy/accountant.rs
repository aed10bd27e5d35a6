//! The RDP accountant: a history of `(noise_multiplier, sample_rate, steps)` phases and its
//! privacy spent, as Opacus 1.6's `RDPAccountant` keeps and computes them.

use serde::{Deserialize, Serialize};

use super::check::{check_delta, check_noise_multiplier, check_sample_rate};
use super::rdp::{compute_rdp, privacy_spent};
use crate::Result;

/// Number of orders in [`DEFAULT_ORDERS`].
pub const DEFAULT_ORDER_COUNT: usize = 151;

/// Opacus's `RDPAccountant.DEFAULT_ALPHAS`: `[1 + x / 10.0 for x in range(1, 100)] +
/// list(range(12, 64))`, i.e. 1.1, 1.2, ..., 10.9 (the same floats Python computes) and then
/// 12, 13, ..., 63.
pub const DEFAULT_ORDERS: [f64; DEFAULT_ORDER_COUNT] = default_orders();

const fn default_orders() -> [f64; DEFAULT_ORDER_COUNT] {
    let mut orders = [0.0; DEFAULT_ORDER_COUNT];
    let mut x = 1;
    while x < 100 {
        orders[x - 1] = 1.0 + x as f64 / 10.0;
        x += 1;
    }
    let mut k = 12;
    while k < 64 {
        orders[99 + k - 12] = k as f64;
        k += 1;
    }
    orders
}

/// Renyi-DP accountant for DP-SGD style training with the sampled Gaussian mechanism,
/// numerically the same as Opacus 1.6's `RDPAccountant`.
///
/// It records phases `(noise_multiplier, sample_rate, steps)`; [`Self::epsilon`] sums the RDP of
/// every phase at each of [`DEFAULT_ORDERS`] and converts the total with
/// [`super::privacy_spent`].
///
/// ```
/// use fedvlm::privacy::RdpAccountant;
///
/// let mut accountant = RdpAccountant::new();
/// accountant.step(1.1, 0.01, 1000);
/// let (epsilon, order) = accountant.privacy_spent(1e-5);
/// assert!((epsilon - accountant.epsilon(1e-5)).abs() == 0.0);
/// assert!(epsilon > 0.5 && epsilon < 2.0 && order > 1.0);
/// ```
///
/// It serialises (serde) as `{"history": [[noise_multiplier, sample_rate, steps], ...]}`, like
/// Opacus's `state_dict()["history"]`, so a run's privacy spent survives a checkpoint. A
/// deserialised history is not validated; [`Self::try_epsilon`] checks it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RdpAccountant {
    history: Vec<(f64, f64, u64)>,
}

impl RdpAccountant {
    /// An accountant with an empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `steps` steps at `noise_multiplier` and `sample_rate` (the probability that a
    /// record, or a client, is in a step's batch).
    ///
    /// As in Opacus, when the last recorded phase has the same noise multiplier and sample rate
    /// (compared with `==`), its step count grows instead of a new phase being added; `n` calls
    /// of Opacus's `step()` are one call here with `steps = n`. `steps == 0` records nothing.
    /// Nothing is validated (Opacus validates nothing either); see [`Self::try_step`].
    pub fn step(&mut self, noise_multiplier: f64, sample_rate: f64, steps: u64) {
        if steps == 0 {
            return;
        }
        if let Some(last) = self.history.last_mut()
            && last.0 == noise_multiplier
            && last.1 == sample_rate
        {
            last.2 = last.2.saturating_add(steps);
            return;
        }
        self.history.push((noise_multiplier, sample_rate, steps));
    }

    /// [`Self::step`] after checking its inputs.
    ///
    /// # Errors
    /// [`crate::FedError::InvalidConfig`] when `noise_multiplier` is negative or not finite, or
    /// `sample_rate` is outside `[0, 1]` (or NaN); nothing is recorded then.
    pub fn try_step(&mut self, noise_multiplier: f64, sample_rate: f64, steps: u64) -> Result<()> {
        check_noise_multiplier(noise_multiplier)?;
        check_sample_rate(sample_rate)?;
        self.step(noise_multiplier, sample_rate, steps);
        Ok(())
    }

    /// The recorded phases `(noise_multiplier, sample_rate, steps)`, oldest first (Opacus's
    /// `history`).
    pub fn history(&self) -> &[(f64, f64, u64)] {
        &self.history
    }

    /// Number of recorded phases (Opacus's `len(accountant)`, which counts history entries).
    pub fn len(&self) -> usize {
        self.history.len()
    }

    /// Whether no step was recorded.
    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    /// Total RDP of the history at each of `orders` (the sum of Opacus's `compute_rdp` over
    /// the phases, in history order).
    pub fn rdp(&self, orders: &[f64]) -> Vec<f64> {
        let mut total = vec![0.0; orders.len()];
        for &(noise, rate, steps) in &self.history {
            for (t, r) in total
                .iter_mut()
                .zip(compute_rdp(rate, noise, steps, orders))
            {
                *t += r;
            }
        }
        total
    }

    /// `(epsilon, best_order)` spent so far at `delta`, over [`DEFAULT_ORDERS`] (Opacus's
    /// `RDPAccountant.get_privacy_spent(delta=delta)`).
    ///
    /// With an empty history this is `(0.0, 0.0)`, as in Opacus. When the RDP is NaN at every
    /// order it is `(inf, NaN)`; a noise multiplier of 0 gives `(inf, 1.1)` (every order is
    /// `inf`, the first wins). `delta` is not checked: `delta <= 0` gives `inf`, `delta >= 1`
    /// follows the formula. See [`Self::try_privacy_spent`].
    pub fn privacy_spent(&self, delta: f64) -> (f64, f64) {
        self.privacy_spent_at(delta, &DEFAULT_ORDERS)
    }

    /// [`Self::privacy_spent`] over caller-chosen orders (Opacus's `alphas` argument); orders
    /// should be above 1. With no orders the result is `(inf, NaN)`.
    pub fn privacy_spent_at(&self, delta: f64, orders: &[f64]) -> (f64, f64) {
        if self.history.is_empty() {
            return (0.0, 0.0);
        }
        let rdp = self.rdp(orders);
        // Same length by construction, so the length check cannot fail.
        privacy_spent(orders, &rdp, delta).unwrap_or((f64::INFINITY, f64::NAN))
    }

    /// Epsilon spent so far at `delta` (Opacus's `RDPAccountant.get_epsilon(delta)`): the first
    /// element of [`Self::privacy_spent`], so 0 before any step and `inf` without privacy.
    pub fn epsilon(&self, delta: f64) -> f64 {
        self.privacy_spent(delta).0
    }

    /// [`Self::privacy_spent`] after checking `delta` and the recorded phases.
    ///
    /// # Errors
    /// [`crate::FedError::InvalidConfig`] when `delta` is not in `(0, 1)`, or a phase recorded
    /// with [`Self::step`] has an invalid noise multiplier or sample rate.
    pub fn try_privacy_spent(&self, delta: f64) -> Result<(f64, f64)> {
        check_delta(delta)?;
        for &(noise, rate, _) in &self.history {
            check_noise_multiplier(noise)?;
            check_sample_rate(rate)?;
        }
        Ok(self.privacy_spent(delta))
    }

    /// [`Self::epsilon`] after the checks of [`Self::try_privacy_spent`].
    ///
    /// # Errors
    /// As [`Self::try_privacy_spent`].
    pub fn try_epsilon(&self, delta: f64) -> Result<f64> {
        Ok(self.try_privacy_spent(delta)?.0)
    }
}

//! The noise multiplier that meets a privacy budget: Opacus 1.6's `get_noise_multiplier` with
//! accountant `"rdp"` (same bracket doubling, same bisection, same stopping rule).

use super::accountant::DEFAULT_ORDERS;
use super::check::{check_delta, check_sample_rate, check_target_epsilon};
use super::rdp::{compute_rdp, privacy_spent};
use crate::{FedError, Result};

/// Opacus's `MAX_SIGMA`: the bracket doubling gives up once the noise multiplier passes it.
pub const MAX_NOISE_MULTIPLIER: f64 = 1e6;

/// Epsilon of `steps` steps at one `(sigma, sample_rate)` (Opacus sets the accountant's history
/// to `[(sigma, sample_rate, steps)]` and calls `get_epsilon`).
fn epsilon_of(sigma: f64, delta: f64, sample_rate: f64, steps: u64) -> f64 {
    let rdp = compute_rdp(sample_rate, sigma, steps, &DEFAULT_ORDERS);
    privacy_spent(&DEFAULT_ORDERS, &rdp, delta).map_or(f64::INFINITY, |(eps, _)| eps)
}

/// Opacus's search; `Err((sigma, eps))` when the budget is too low (doubling passed the cap).
fn search(
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
    epsilon_tolerance: f64,
) -> std::result::Result<f64, (f64, f64)> {
    let mut eps_high = f64::INFINITY;
    let (mut sigma_low, mut sigma_high) = (0.0_f64, 10.0_f64);
    while eps_high > target_epsilon {
        sigma_high *= 2.0;
        eps_high = epsilon_of(sigma_high, delta, sample_rate, steps);
        if sigma_high > MAX_NOISE_MULTIPLIER {
            return Err((sigma_high, eps_high));
        }
    }
    while target_epsilon - eps_high > epsilon_tolerance {
        let sigma = (sigma_low + sigma_high) / 2.0;
        if sigma == sigma_low || sigma == sigma_high {
            // The bracket cannot shrink any more; Opacus would loop forever here.
            break;
        }
        let eps = epsilon_of(sigma, delta, sample_rate, steps);
        if eps < target_epsilon {
            sigma_high = sigma;
            eps_high = eps;
        } else {
            sigma_low = sigma;
        }
    }
    Ok(sigma_high)
}

/// The noise multiplier that keeps `steps` steps at `sample_rate` within `(target_epsilon,
/// delta)`, exactly as Opacus 1.6's `get_noise_multiplier(target_epsilon=..., target_delta=...,
/// sample_rate=..., steps=..., accountant="rdp", epsilon_tolerance=...)` finds it (Opacus's
/// default tolerance is 0.01).
///
/// The bracket `[0, sigma_high]` starts with `sigma_high = 20` and doubles until the epsilon at
/// `sigma_high` is at most `target_epsilon`; bisection then keeps the upper end at an epsilon
/// below the target and stops once `target_epsilon - epsilon(sigma_high) <= epsilon_tolerance`.
/// The result is that upper end, so its epsilon is never above the target.
///
/// Nothing is validated. Returns NaN where Opacus raises `ValueError("The privacy budget is too
/// low.")` (the doubling passed [`MAX_NOISE_MULTIPLIER`]). Where Opacus loops forever (every
/// noise level meets the target, e.g. `sample_rate == 0` or `steps == 0`, or a tolerance `<= 0`),
/// the bisection stops when the midpoint equals an end of the bracket and returns the upper end
/// (in the first case the smallest positive `f64`, 5e-324: the bisection's limit of 0). See [`try_noise_multiplier_for`] for checked inputs.
pub fn noise_multiplier_for(
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
    epsilon_tolerance: f64,
) -> f64 {
    search(target_epsilon, delta, sample_rate, steps, epsilon_tolerance).unwrap_or(f64::NAN)
}

/// [`noise_multiplier_for`] after checking its inputs.
///
/// # Errors
/// [`FedError::InvalidConfig`] when `target_epsilon` is not finite and positive, `delta` is not
/// in `(0, 1)`, `sample_rate` is not in `[0, 1]`, `steps` is 0, `epsilon_tolerance` is not finite
/// and positive, or when the budget is too low (a noise multiplier above
/// [`MAX_NOISE_MULTIPLIER`] would be needed; Opacus raises `ValueError` there).
pub fn try_noise_multiplier_for(
    target_epsilon: f64,
    delta: f64,
    sample_rate: f64,
    steps: u64,
    epsilon_tolerance: f64,
) -> Result<f64> {
    check_target_epsilon(target_epsilon)?;
    check_delta(delta)?;
    check_sample_rate(sample_rate)?;
    if steps == 0 {
        return Err(FedError::config("steps", "must be at least 1"));
    }
    if !(epsilon_tolerance.is_finite() && epsilon_tolerance > 0.0) {
        return Err(FedError::config(
            "epsilon_tolerance",
            format!("must be finite and > 0, got {epsilon_tolerance}"),
        ));
    }
    search(target_epsilon, delta, sample_rate, steps, epsilon_tolerance).map_err(|(sigma, eps)| {
        FedError::config(
            "target_epsilon",
            format!(
                "{target_epsilon} is too low a privacy budget: even noise multiplier {sigma} \
                 gives epsilon {eps} at delta {delta}"
            ),
        )
    })
}

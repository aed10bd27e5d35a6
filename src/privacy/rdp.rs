//! RDP of the sampled Gaussian mechanism and its conversion to `(epsilon, delta)`-DP: a line by
//! line port of Opacus 1.6's `opacus/accountants/analysis/rdp.py` (itself TF Privacy's
//! `rdp_accountant.py`; Mironov, Talwar and Zhang 2019, <https://arxiv.org/abs/1908.10530>).
//!
//! These functions validate nothing, like Opacus. Where Opacus raises or never returns, they
//! return NaN instead (documented per function); the checked entry points are
//! [`super::RdpAccountant::try_step`], [`super::RdpAccountant::try_epsilon`] and
//! [`super::try_noise_multiplier_for`].

use super::special::{binom_float_product, binom_int, log_erfc};
use crate::{FedError, Result};

/// Python's `min(x, y)`: `y` only if `y < x` (so NaN handling matches).
fn py_min(x: f64, y: f64) -> f64 {
    if y < x { y } else { x }
}

/// Python's `max(x, y)`: `y` only if `y > x`.
fn py_max(x: f64, y: f64) -> f64 {
    if y > x { y } else { x }
}

/// `log(exp(logx) + exp(logy))` (Opacus `_log_add`).
fn log_add(logx: f64, logy: f64) -> f64 {
    let (a, b) = (py_min(logx, logy), py_max(logx, logy));
    if a == f64::NEG_INFINITY {
        return b;
    }
    (a - b).exp().ln_1p() + b
}

/// `log(exp(logx) - exp(logy))` (Opacus `_log_sub`). Opacus raises `ValueError` when
/// `logx < logy`; this returns NaN there. Where `expm1` overflows, Opacus returns `logx`.
fn log_sub(logx: f64, logy: f64) -> f64 {
    if logx < logy {
        return f64::NAN;
    }
    if logy == f64::NEG_INFINITY {
        return logx;
    }
    if logx == logy {
        return f64::NEG_INFINITY;
    }
    let d = logx - logy;
    let e = d.exp_m1();
    if e.is_infinite() && d.is_finite() {
        // Python's math.expm1 raises OverflowError here, which Opacus catches.
        return logx;
    }
    e.ln() + logy
}

/// `log(A_alpha)` for integer `alpha` (Opacus `_compute_log_a_for_int_alpha`).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let (log_q, log_1mq) = (q.ln(), (1.0 - q).ln());
    let two_s2 = 2.0 * (sigma * sigma);
    for i in 0..=alpha {
        let (fi, fj) = (i as f64, (alpha - i) as f64);
        let log_coef_i = binom_int(alpha, i).ln() + fi * log_q + fj * log_1mq;
        let s = log_coef_i + (fi * fi - fi) / two_s2;
        log_a = log_add(log_a, s);
    }
    log_a
}

/// The fractional series stops once both terms fall below `exp(-30)` (Opacus's rule). Opacus
/// loops forever when a term is NaN; this returns NaN instead, and also after this many terms.
const MAX_FRAC_TERMS: u64 = 100_000_000;

/// `log(A_alpha)` for fractional `alpha` (Opacus `_compute_log_a_for_frac_alpha`).
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let (log_q, log_1mq) = (q.ln(), (1.0 - q).ln());
    let two_s2 = 2.0 * (sigma * sigma);
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    let log_half = 0.5_f64.ln();
    let mut coef = 1.0;
    for i in 0..MAX_FRAC_TERMS {
        // scipy's binom: its multiplication formula below 20, then the ratio recurrence
        // binom(a, i) = binom(a, i - 1) * (a - i + 1) / i (scipy uses a beta function there).
        coef = if i < 20 {
            binom_float_product(alpha, i)
        } else {
            coef * (alpha - (i - 1) as f64) / i as f64
        };
        let log_coef = coef.abs().ln();
        let fi = i as f64;
        let j = alpha - fi;

        let log_t0 = log_coef + fi * log_q + j * log_1mq;
        let log_t1 = log_coef + j * log_q + fi * log_1mq;

        let log_e0 = log_half + log_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = log_half + log_erfc((z0 - j) / sqrt2_sigma);

        let log_s0 = log_t0 + (fi * fi - fi) / two_s2 + log_e0;
        let log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;

        if coef > 0.0 {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }

        let biggest = py_max(log_s0, log_s1);
        if biggest < -30.0 {
            return log_add(log_a0, log_a1);
        }
        if biggest.is_nan() {
            return f64::NAN;
        }
    }
    f64::NAN
}

/// RDP of one step of the sampled Gaussian mechanism at order `alpha` (Opacus `_compute_rdp`).
///
/// `q` is the sampling rate, `sigma` the noise multiplier. The special cases come first, in
/// Opacus's order: `q == 0` gives 0, `sigma == 0` gives `inf`, `q == 1` gives the plain
/// Gaussian's `alpha / (2 sigma^2)`, `alpha == inf` gives `inf`. Otherwise `log(A_alpha) /
/// (alpha - 1)`, with the integer formula when `alpha` is a whole number. Orders must be above
/// 1 (at `alpha == 1` Opacus divides by zero and raises; this returns NaN or an infinity).
/// `q` outside `[0, 1]` makes Opacus raise (`math.log` of a negative number); here it gives NaN,
/// as does a NaN `q` or `sigma` (where Opacus returns `-inf` or loops forever). A negative
/// `sigma` goes through Opacus's formulas as written.
pub fn rdp_at_order(q: f64, sigma: f64, alpha: f64) -> f64 {
    if !(0.0..=1.0).contains(&q) || sigma.is_nan() {
        // Opacus raises for q outside [0, 1]; for a NaN q or sigma its log-space sums skip the
        // NaN terms (Python's min/max) and return -inf, i.e. "no privacy loss", or never end.
        return f64::NAN;
    }
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * (sigma * sigma));
    }
    if alpha.is_infinite() {
        return f64::INFINITY;
    }
    let log_a = if alpha.fract() == 0.0 && alpha >= 0.0 && alpha < u64::MAX as f64 {
        log_a_int(q, sigma, alpha as u64)
    } else {
        log_a_frac(q, sigma, alpha)
    };
    log_a / (alpha - 1.0)
}

/// RDP of `steps` steps of the sampled Gaussian mechanism at each order (Opacus `compute_rdp`):
/// `steps * rdp_at_order(q, noise_multiplier, alpha)` for each `alpha` in `orders`.
pub fn compute_rdp(q: f64, noise_multiplier: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&alpha| rdp_at_order(q, noise_multiplier, alpha) * steps as f64)
        .collect()
}

/// Converts RDP guarantees at `orders` into `(epsilon, best_order)` for `delta` (Opacus
/// `get_privacy_spent`, after Balle et al. 2020, Theorem 21 of <https://arxiv.org/abs/1905.09982>):
/// `eps(alpha) = rdp - (ln(delta) + ln(alpha)) / (alpha - 1) + ln((alpha - 1) / alpha)`,
/// minimised over the orders, ignoring NaN (numpy's `nanargmin`: the first minimum wins).
///
/// When every `eps(alpha)` is NaN (or `orders` is empty) the result is `(inf, NaN)`, Opacus's
/// "no privacy" case. `delta` is not checked: `delta <= 0` gives `inf` (or NaN, hence `inf`).
/// Opacus's warning when the best order is the smallest or largest one is not reproduced.
///
/// # Errors
/// [`FedError::InvalidConfig`] when `orders` and `rdp` differ in length (Opacus raises there).
pub fn privacy_spent(orders: &[f64], rdp: &[f64], delta: f64) -> Result<(f64, f64)> {
    if orders.len() != rdp.len() {
        return Err(FedError::config(
            "rdp",
            format!("has {} values for {} orders", rdp.len(), orders.len()),
        ));
    }
    let log_delta = delta.ln();
    let mut best: Option<(f64, f64)> = None;
    for (&alpha, &r) in orders.iter().zip(rdp) {
        let eps = r - (log_delta + alpha.ln()) / (alpha - 1.0) + ((alpha - 1.0) / alpha).ln();
        if eps.is_nan() {
            continue;
        }
        match best {
            // Neither is NaN here; ties keep the first order, like numpy.nanargmin.
            Some((b, _)) if eps >= b => {}
            _ => best = Some((eps, alpha)),
        }
    }
    Ok(best.unwrap_or((f64::INFINITY, f64::NAN)))
}

#[cfg(test)]
mod tests {
    use super::{log_add, log_sub};

    #[test]
    fn log_space_arithmetic() {
        let (x, y) = (2f64.ln(), 3f64.ln());
        assert!((log_add(x, y) - 5f64.ln()).abs() < 1e-15);
        assert!((log_sub(y, x) - 0.0).abs() < 1e-15);
        assert_eq!(log_add(f64::NEG_INFINITY, x), x);
        assert_eq!(log_sub(x, x), f64::NEG_INFINITY);
        assert_eq!(log_sub(x, f64::NEG_INFINITY), x);
        assert!(log_sub(x, y).is_nan());
        assert_eq!(log_sub(1000.0, 1.0), 1000.0);
    }
}

//! Input checks shared by the `try_` entry points of the privacy module.

use crate::{FedError, Result};

/// `noise_multiplier` must be finite and `>= 0` (0 is allowed: no noise, epsilon `inf`).
pub(crate) fn check_noise_multiplier(noise_multiplier: f64) -> Result<()> {
    if noise_multiplier.is_finite() && noise_multiplier >= 0.0 {
        Ok(())
    } else {
        Err(FedError::config(
            "noise_multiplier",
            format!("must be finite and >= 0, got {noise_multiplier}"),
        ))
    }
}

/// `sample_rate` must be in `[0, 1]`.
pub(crate) fn check_sample_rate(sample_rate: f64) -> Result<()> {
    if (0.0..=1.0).contains(&sample_rate) {
        Ok(())
    } else {
        Err(FedError::config(
            "sample_rate",
            format!("must be in [0, 1], got {sample_rate}"),
        ))
    }
}

/// `delta` must be in `(0, 1)`.
pub(crate) fn check_delta(delta: f64) -> Result<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(FedError::config(
            "delta",
            format!("must be in (0, 1), got {delta}"),
        ))
    }
}

/// `target_epsilon` must be finite and `> 0`.
pub(crate) fn check_target_epsilon(target_epsilon: f64) -> Result<()> {
    if target_epsilon.is_finite() && target_epsilon > 0.0 {
        Ok(())
    } else {
        Err(FedError::config(
            "target_epsilon",
            format!("must be finite and > 0, got {target_epsilon}"),
        ))
    }
}

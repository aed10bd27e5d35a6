//! FedTrimmedAvg: the coordinate-wise trimmed mean of the client updates (Yin et al. 2018).

use serde::{Deserialize, Serialize};

use super::Strategy;
use super::math::{check_updates, map_columns, mean_f64};
use crate::error::{FedError, Result};
use crate::params::{ClientUpdate, Payload};

/// Coordinate-wise trimmed mean as Flower 1.42's `FedTrimmedAvg`: with `n` updates, drop the
/// `floor(beta n)` smallest and as many largest values of every coordinate and average the rest.
/// Ignores example counts.
///
/// Tolerance against Flower: numpy sums the kept values in `float32` in the order
/// `np.partition` leaves them; this sums them in `f64` and rounds once, so the results differ
/// by a few `f32` rounding steps of the partial sums (relative `~1e-7`, at most about
/// `n * 6e-8` of the largest kept magnitude).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FedTrimmedAvg {
    /// The fraction cut at each end, in `[0, 0.5)` (Flower's default: 0.2).
    pub beta: f64,
}

impl Default for FedTrimmedAvg {
    /// Flower's default, `beta = 0.2`.
    fn default() -> Self {
        Self::new(0.2)
    }
}

impl FedTrimmedAvg {
    /// Cuts `beta` at each end; checked by [`FedTrimmedAvg::validate`] when aggregating.
    pub fn new(beta: f64) -> Self {
        Self { beta }
    }

    /// Checks `0 <= beta < 0.5` (Flower raises `ValueError` otherwise).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for `beta` out of range.
    pub fn validate(&self) -> Result<()> {
        if (0.0..0.5).contains(&self.beta) {
            Ok(())
        } else {
            Err(FedError::config(
                "beta",
                format!("must be in [0, 0.5), got {}", self.beta),
            ))
        }
    }
}

impl Strategy for FedTrimmedAvg {
    fn name(&self) -> String {
        format!("fedtrimmedavg(beta={})", self.beta)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.validate()?;
        check_updates(global, updates, "FedTrimmedAvg")?;
        let n = updates.len();
        // Python's int(cut_fraction * nobs).
        let lower = (self.beta * n as f64) as usize;
        let upper = n - lower;
        let payloads: Vec<&Payload> = updates.iter().map(|u| &u.payload).collect();
        let mut out = map_columns(global, &payloads, |column| {
            if lower > 0 {
                column.select_nth_unstable_by(lower, f32::total_cmp);
                column[lower..].select_nth_unstable_by(upper - 1 - lower, f32::total_cmp);
            }
            mean_f64(&column[lower..upper])
        });
        out.round = round;
        Ok(out)
    }
}

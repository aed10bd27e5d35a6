//! FedMedian: the coordinate-wise median of the client updates (Yin et al. 2018).

use serde::{Deserialize, Serialize};

use super::Strategy;
use super::math::{check_updates, map_columns, median_f32};
use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// Coordinate-wise median as Flower 1.42's `FedMedian` (`np.median(np.stack(layers), axis=0)`):
/// for an even number of updates, the `f32` mean of the two middle values. Ignores example
/// counts. Bit-identical to Flower's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FedMedian;

impl FedMedian {
    /// The strategy (it has no setting).
    pub fn new() -> Self {
        Self
    }
}

impl Strategy for FedMedian {
    fn name(&self) -> String {
        "fedmedian".to_string()
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        check_updates(global, updates, "FedMedian")?;
        let payloads: Vec<&Payload> = updates.iter().map(|u| &u.payload).collect();
        let mut out = map_columns(global, &payloads, median_f32);
        out.round = round;
        Ok(out)
    }
}

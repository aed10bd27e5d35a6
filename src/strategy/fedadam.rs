//! FedAdam: Adam on the server over the pseudo-gradient `average - global`.

use super::fedopt::{Moments, ServerOptConfig};
use super::{FedAvg, Strategy, StrategyState};
use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// The name in saved states.
const KIND: &str = "fedadam";

/// FedAdam (Reddi et al. 2021) as Flower 1.42's `FedAdam`: with `delta_t = average - global`,
///
/// * `m_t = beta_1 m_{t-1} + (1 - beta_1) delta_t`, `v_t = beta_2 v_{t-1} + (1 - beta_2) delta_t^2`,
///   both starting at zero and kept in `f32`;
/// * the bias-corrected rate `eta_norm = eta sqrt(1 - beta_2^(t+1)) / (1 - beta_1^(t+1))` with
///   `t` the 1-based round (Flower's exponent is `server_round + 1`), in `f64`;
/// * `x_t = x_{t-1} + eta_norm m_t / (sqrt(v_t) + tau)`, which numpy evaluates in `f64` (the
///   `float64` scalar `eta_norm` promotes it) and this crate rounds to `f32`.
///
/// Equal to Flower's result rounded to `f32`, bit for bit. `average` is [`FedAvg`] by examples.
#[derive(Debug, Clone, Default)]
pub struct FedAdam {
    /// Hyper-parameters (default: [`ServerOptConfig::fedadam`]).
    pub config: ServerOptConfig,
    /// How the clients' average (the pseudo-gradient's target) is weighted.
    pub fedavg: FedAvg,
    moments: Moments,
    round: u64,
}

impl FedAdam {
    /// With the given hyper-parameters and example-weighted averaging.
    pub fn new(config: ServerOptConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }
}

impl Strategy for FedAdam {
    fn name(&self) -> String {
        format!("fedadam(eta={})", self.config.eta)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.config.validate()?;
        let average = self.fedavg.aggregate(round, global, updates)?;
        let ServerOptConfig {
            eta,
            beta_1,
            beta_2,
            tau,
        } = self.config;
        let t = round as f64 + 1.0;
        let eta_norm = eta * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
        let b2 = beta_2 as f32;
        let one_minus_b2 = (1.0 - beta_2) as f32;
        let tau = tau as f32;
        let out = self
            .moments
            .step(global, average, beta_1, |x, delta, m, v| {
                *v = b2 * *v + one_minus_b2 * (delta * delta);
                (f64::from(x) + eta_norm * f64::from(m) / f64::from(v.sqrt() + tau)) as f32
            })?;
        self.round = round;
        Ok(out)
    }

    fn save_state(&self) -> Result<StrategyState> {
        let mut state = StrategyState::new(KIND);
        state.round = self.round;
        self.moments.save(&mut state);
        Ok(state)
    }

    fn load_state(&mut self, mut state: StrategyState) -> Result<()> {
        state.expect_name(KIND)?;
        self.moments = Moments::load(&mut state)?;
        self.round = state.round;
        Ok(())
    }
}

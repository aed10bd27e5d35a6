//! FedAdagrad: Adagrad on the server over the pseudo-gradient `average - global`.

use super::fedopt::{Moments, ServerOptConfig};
use super::{FedAvg, Strategy, StrategyState};
use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// The name in saved states.
const KIND: &str = "fedadagrad";

/// FedAdagrad (Reddi et al. 2021) as Flower 1.42's `FedAdagrad`: with
/// `delta_t = average - global`,
///
/// * `m_t = beta_1 m_{t-1} + (1 - beta_1) delta_t` (Flower fixes `beta_1 = 0`, so `m_t = delta_t`;
///   [`ServerOptConfig::fedadagrad`] does too), `v_t = v_{t-1} + delta_t^2`, from zero;
/// * `x_t = x_{t-1} + eta m_t / (sqrt(v_t) + tau)`.
///
/// `beta_2` is unused. Everything in `f32` as numpy does; bit-identical to Flower's result.
#[derive(Debug, Clone)]
pub struct FedAdagrad {
    /// Hyper-parameters (default: [`ServerOptConfig::fedadagrad`]).
    pub config: ServerOptConfig,
    /// How the clients' average (the pseudo-gradient's target) is weighted.
    pub fedavg: FedAvg,
    moments: Moments,
    round: u64,
}

impl Default for FedAdagrad {
    /// Flower's defaults, [`ServerOptConfig::fedadagrad`].
    fn default() -> Self {
        Self::new(ServerOptConfig::fedadagrad())
    }
}

impl FedAdagrad {
    /// With the given hyper-parameters and example-weighted averaging.
    pub fn new(config: ServerOptConfig) -> Self {
        Self {
            config,
            fedavg: FedAvg::new(),
            moments: Moments::default(),
            round: 0,
        }
    }
}

impl Strategy for FedAdagrad {
    fn name(&self) -> String {
        format!("fedadagrad(eta={})", self.config.eta)
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.config.validate()?;
        let average = self.fedavg.aggregate(round, global, updates)?;
        let eta = self.config.eta as f32;
        let tau = self.config.tau as f32;
        let out = self
            .moments
            .step(global, average, self.config.beta_1, |x, delta, m, v| {
                *v += delta * delta;
                x + eta * m / (v.sqrt() + tau)
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

//! Strategy wrappers for central DP with fixed clipping, server-side and client-side, as Flower
//! 1.42's `DifferentialPrivacyServerSideFixedClipping` and
//! `DifferentialPrivacyClientSideFixedClipping` (without the privacy accountant).

use rayon::prelude::*;

use super::dp::{DpConfig, add_gaussian_noise, clip_update};
use super::math::check_updates;
use super::{Strategy, StrategyState};
use crate::error::Result;
use crate::params::{ClientUpdate, Payload};

/// The names in saved states.
const SERVER_KIND: &str = "dp-fixed-clipping";
const CLIENT_KIND: &str = "dp-client-side-fixed-clipping";

/// Central DP with server-side fixed clipping around any strategy, in Flower's order:
///
/// 1. clip every update relative to the current global ([`clip_update`], norm
///    `config.clipping_norm`);
/// 2. aggregate the clipped updates with the inner strategy;
/// 3. add Gaussian noise of std `noise_multiplier * clipping_norm / num_sampled_clients` to every
///    value of the aggregate, from a ChaCha8 stream seeded by `config.seed` and the round.
///
/// With `noise_multiplier = 0` the result agrees with Flower's to the clipping scale's `~1e-7`
/// relative; the noise cannot match numpy's generator and is checked statistically. Like Flower
/// without strict accounting, a round with another number of updates than
/// `num_sampled_clients` still aggregates.
#[derive(Debug, Clone)]
pub struct DpFixedClipping<S> {
    /// The wrapped strategy.
    pub inner: S,
    /// Noise and clipping settings.
    pub config: DpConfig,
    round: u64,
}

impl<S: Strategy> DpFixedClipping<S> {
    /// Wraps `inner`; `config` is checked by [`DpConfig::validate`] when aggregating.
    pub fn new(inner: S, config: DpConfig) -> Self {
        Self {
            inner,
            config,
            round: 0,
        }
    }
}

impl<S: Strategy> Strategy for DpFixedClipping<S> {
    fn name(&self) -> String {
        format!(
            "dp-fixed-clipping(noise={},clip={},{})",
            self.config.noise_multiplier,
            self.config.clipping_norm,
            self.inner.name()
        )
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.config.validate()?;
        check_updates(global, updates, "DpFixedClipping")?;
        let norm = self.config.clipping_norm;
        let clipped: Vec<ClientUpdate> = updates
            .par_iter()
            .map(|u| {
                let mut u = u.clone();
                clip_update(&mut u.payload, global, norm);
                u
            })
            .collect();
        let mut out = self.inner.aggregate(round, global, &clipped)?;
        add_gaussian_noise(&mut out, self.config.noise_stdv(), self.config.seed, round);
        self.round = round;
        Ok(out)
    }

    fn proximal_mu(&self) -> Option<f64> {
        self.inner.proximal_mu()
    }

    fn client_clipping_norm(&self) -> Option<f64> {
        self.inner.client_clipping_norm()
    }

    fn dp_config(&self) -> Option<DpConfig> {
        Some(self.config)
    }

    fn save_state(&self) -> Result<StrategyState> {
        wrapper_state(SERVER_KIND, self.round, &self.inner)
    }

    fn load_state(&mut self, state: StrategyState) -> Result<()> {
        self.round = load_wrapper_state(SERVER_KIND, state, &mut self.inner)?;
        Ok(())
    }
}

/// Central DP with client-side fixed clipping: clients clip their own update to
/// [`Strategy::client_clipping_norm`] with [`clip_update`] before sending it (Flower's
/// `fixedclipping_mod`), and the server aggregates with the inner strategy and adds the same
/// Gaussian noise as [`DpFixedClipping`].
#[derive(Debug, Clone)]
pub struct DpClientSideFixedClipping<S> {
    /// The wrapped strategy.
    pub inner: S,
    /// Noise and clipping settings.
    pub config: DpConfig,
    round: u64,
}

impl<S: Strategy> DpClientSideFixedClipping<S> {
    /// Wraps `inner`; `config` is checked by [`DpConfig::validate`] when aggregating.
    pub fn new(inner: S, config: DpConfig) -> Self {
        Self {
            inner,
            config,
            round: 0,
        }
    }
}

impl<S: Strategy> Strategy for DpClientSideFixedClipping<S> {
    fn name(&self) -> String {
        format!(
            "dp-client-side-fixed-clipping(noise={},clip={},{})",
            self.config.noise_multiplier,
            self.config.clipping_norm,
            self.inner.name()
        )
    }

    fn aggregate(
        &mut self,
        round: u64,
        global: &Payload,
        updates: &[ClientUpdate],
    ) -> Result<Payload> {
        self.config.validate()?;
        let mut out = self.inner.aggregate(round, global, updates)?;
        add_gaussian_noise(&mut out, self.config.noise_stdv(), self.config.seed, round);
        self.round = round;
        Ok(out)
    }

    fn proximal_mu(&self) -> Option<f64> {
        self.inner.proximal_mu()
    }

    fn client_clipping_norm(&self) -> Option<f64> {
        Some(self.config.clipping_norm)
    }

    fn dp_config(&self) -> Option<DpConfig> {
        Some(self.config)
    }

    fn save_state(&self) -> Result<StrategyState> {
        wrapper_state(CLIENT_KIND, self.round, &self.inner)
    }

    fn load_state(&mut self, state: StrategyState) -> Result<()> {
        self.round = load_wrapper_state(CLIENT_KIND, state, &mut self.inner)?;
        Ok(())
    }
}

/// A wrapper's state: its round, and the inner strategy's state nested. (The noise is seeded per
/// round, so the generator carries nothing between rounds.)
fn wrapper_state<S: Strategy>(kind: &str, round: u64, inner: &S) -> Result<StrategyState> {
    let mut state = StrategyState::new(kind);
    state.round = round;
    state.inner = Some(Box::new(inner.save_state()?));
    Ok(state)
}

/// Restores what [`wrapper_state`] saved into `inner` and returns the round.
fn load_wrapper_state<S: Strategy>(kind: &str, state: StrategyState, inner: &mut S) -> Result<u64> {
    state.expect_name(kind)?;
    let StrategyState {
        round,
        inner: nested,
        ..
    } = state;
    if let Some(nested) = nested {
        inner.load_state(*nested)?;
    }
    Ok(round)
}

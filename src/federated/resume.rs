//! Checkpoints of a [`Simulation`]: save after a round, resume from the last complete one.

use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::Checkpoint;
use super::client::ClientRuntime;
use super::simulation::Simulation;
use super::task::FederatedTask;
use crate::error::{FedError, Result};
use crate::privacy::RdpAccountant;
use crate::strategy::Strategy;

impl<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> Simulation<B, T, S> {
    /// Saves everything needed to continue after the last completed round: the global state,
    /// every client's adapter matrices and shared extras, the strategy's state (server
    /// optimiser moments) and the round counter, atomically ([`Checkpoint::save`]). Randomness
    /// is derived from `(seed, round, client)` (DP noise from `(seed, round)`), so a resumed run
    /// equals an uninterrupted one. With `keep_optimizer_state`, every client's optimiser state
    /// (AdamW moments and step counts, SGD velocities) is saved too, keyed by parameter path.
    pub fn save_checkpoint(&self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        Checkpoint {
            completed_rounds: self.next_round - 1,
            seed: self.config.seed,
            sharing: self.spec.sharing,
            global: self.server.global().clone(),
            clients: self.clients.iter().map(ClientRuntime::state).collect(),
            synced: self.clients.iter().map(ClientRuntime::synced).collect(),
            strategy: Some(self.server.strategy().save_state()?),
            optimizers: if self.config.keep_optimizer_state {
                self.clients
                    .iter()
                    .map(ClientRuntime::optimizer_state)
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            },
        }
        .save(dir)
    }

    /// Restores a checkpoint written by [`Simulation::save_checkpoint`] of a simulation built
    /// the same way (same task, models, sharing and seed); the next [`Simulation::run`]
    /// continues after the saved round.
    pub fn resume(&mut self, dir: impl AsRef<std::path::Path>) -> Result<()> {
        let checkpoint = Checkpoint::load(dir)?;
        if checkpoint.sharing != self.spec.sharing || checkpoint.seed != self.config.seed {
            return Err(FedError::config(
                "checkpoint",
                format!(
                    "was written with sharing {} and seed {}, this run uses {} and {}",
                    checkpoint.sharing, checkpoint.seed, self.spec.sharing, self.config.seed
                ),
            ));
        }
        if self.config.keep_optimizer_state
            && checkpoint.optimizers.is_empty()
            && checkpoint.completed_rounds > 0
        {
            return Err(FedError::config(
                "checkpoint",
                "holds no client optimiser state, which this run keeps across rounds \
                 (keep_optimizer_state); it was written by a run without it or by an older fedvlm",
            ));
        }
        if checkpoint.clients.len() != self.clients.len() {
            return Err(FedError::config(
                "checkpoint",
                format!(
                    "holds {} clients, this run has {}",
                    checkpoint.clients.len(),
                    self.clients.len()
                ),
            ));
        }
        self.server.set_global(checkpoint.global)?;
        if let Some(state) = checkpoint.strategy {
            self.server.strategy_mut().load_state(state)?;
        }
        for (k, (client, state)) in self.clients.iter_mut().zip(&checkpoint.clients).enumerate() {
            let synced = checkpoint.synced.get(k).copied().flatten();
            client.restore_state(state, synced)?;
            client.reset_optimizer();
            if let Some(Some(optimizer)) = checkpoint.optimizers.get(k) {
                client.restore_optimizer_state(&self.config.optimizer, optimizer)?;
            }
        }
        self.next_round = checkpoint.completed_rounds + 1;
        // The accountant restarts from the rounds completed, each counted as released (an
        // upper bound when some of them were not aggregated).
        self.accountant = RdpAccountant::new();
        if let Some(dp) = self.server.strategy().dp_config() {
            for round in 1..self.next_round {
                let rate = self.sample_clients(round).len() as f64 / self.clients.len() as f64;
                self.accountant.step(dp.noise_multiplier, rate, 1);
            }
        }
        Ok(())
    }
}

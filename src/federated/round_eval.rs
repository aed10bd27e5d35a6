//! The scoring half of a simulated round: every client's personalised model on its test split
//! (and on the global test set when due), gathered into the round's report.

use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::client::evaluate_model;
use super::report::{ClientRoundReport, Rejection, RoundReport};
use super::simulation::{Simulation, Trained};
use super::task::{FederatedTask, Split};
use crate::error::Result;
use crate::metrics::{ClassificationMetrics, mean_metrics};
use crate::params::Payload;
use crate::strategy::Strategy;

impl<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> Simulation<B, T, S> {
    pub(super) fn evaluate_round(
        &self,
        round: u64,
        sampled: &[usize],
        training: Trained,
        rejected: Vec<Rejection>,
        started: Instant,
    ) -> Result<RoundReport> {
        let every = self.config.global_eval_every;
        let has_global = self.task.num_examples(0, Split::GlobalTest) > 0
            && every > 0
            && (round == 0 || round.is_multiple_of(every) || round == self.config.rounds);
        let global = Payload::from_bytes(&self.server.global().to_bytes(self.config.wire_dtype)?)?;
        let batch = self.config.eval_batch_size;
        let mut clients = Vec::with_capacity(self.clients.len());
        for (k, client) in self.clients.iter().enumerate() {
            let personal = if round == 0 {
                client.model().clone()
            } else {
                client.personalized(&global)?
            };
            let test = evaluate_model(&self.task, &personal, k, Split::Test, batch)?;
            let global_test = if has_global {
                evaluate_model(&self.task, &personal, k, Split::GlobalTest, batch)?
            } else {
                None
            };
            let trained = training.get(&k);
            clients.push(ClientRoundReport {
                client: k,
                participated: trained.is_some(),
                train_loss: trained.map(|t| t.0),
                train_examples: trained.map_or(0, |t| t.1),
                bytes_up: trained.map_or(0, |t| t.2),
                bytes_down: trained.map_or(0, |t| t.3),
                seconds: trained.map_or(0.0, |t| t.4),
                test,
                global_test,
            });
        }
        let mean_of = |pick: fn(&ClientRoundReport) -> Option<ClassificationMetrics>| {
            let all: Vec<ClassificationMetrics> = clients.iter().filter_map(pick).collect();
            mean_metrics(&all)
        };
        Ok(RoundReport {
            round,
            sharing: self.spec.sharing.name().to_string(),
            strategy: self.server.strategy().name(),
            sampled: sampled.to_vec(),
            mean_test: mean_of(|c| c.test),
            mean_global_test: mean_of(|c| c.global_test),
            clients,
            rejected,
            failed: Vec::new(),
            aggregated: true,
            privacy: None,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

//! The training phase of a simulated round: cohorts where the task offers them, one client at
//! a time otherwise.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;

use super::CohortMember;
use crate::error::FedError;
use crate::error::Result;
use crate::federated::client::{ClientConfig, LocalTraining};
use crate::federated::phase::{self, RunPhase};
use crate::federated::simulation::Simulation;
use crate::federated::task::{FederatedTask, Split};
use crate::params::Payload;
use crate::strategy::Strategy;

/// One client's training in a round: its update (or why it failed) and the seconds it took
/// (a cohort's time is split evenly among its members).
pub(crate) type Trained = (Result<LocalTraining>, f64);

impl<B: AutodiffBackend, T: FederatedTask<B>, S: Strategy> Simulation<B, T, S> {
    /// Trains `clients` for `round`, in the order given: in cohorts when the task has a
    /// [`super::CohortTrainer`] and [`crate::SimulationConfig::cohort`] allows it, sequentially
    /// otherwise.
    pub(crate) fn train_clients(
        &mut self,
        clients: &[usize],
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
    ) -> Result<Vec<Trained>> {
        let mut results: BTreeMap<usize, Trained> = BTreeMap::new();
        let cohorts = self.plan_cohorts(clients, config);
        for cohort in &cohorts {
            let trained = self.train_cohort(cohort, round, config, prox)?;
            results.extend(cohort.iter().copied().zip(trained));
        }
        for &k in clients {
            if results.contains_key(&k) {
                continue;
            }
            let t0 = Instant::now();
            phase::reached(|| RunPhase::Training { round, client: k });
            let trained = self.clients[k].train(&self.task, round, config, prox);
            results.insert(k, (trained, t0.elapsed().as_secs_f64()));
        }
        Ok(clients.iter().filter_map(|k| results.remove(k)).collect())
    }

    /// The cohorts of `clients`: clients with the same cohort key, most training examples
    /// first, in groups of at most the cohort size. Clients left out train sequentially.
    fn plan_cohorts(&self, clients: &[usize], config: &ClientConfig) -> Vec<Vec<usize>> {
        let Some(trainer) = self.task.cohort() else {
            return Vec::new();
        };
        if config.keep_optimizer_state || config.micro_batch_size.is_some() {
            return Vec::new();
        }
        let Some(size) = self
            .config
            .cohort
            .size(clients.len(), trainer.max_cohort_size(config))
        else {
            return Vec::new();
        };
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &k in clients {
            let client = &self.clients[k];
            if client.has_kept_optimizer() {
                continue;
            }
            let member = CohortMember {
                client: k,
                model: client.model(),
                trainable: client.trainable(),
            };
            if let Some(key) = trainer.cohort_key(&member) {
                groups.entry(key).or_default().push(k);
            }
        }
        let mut cohorts = Vec::new();
        for (_, mut members) in groups {
            members.sort_by_key(|&k| std::cmp::Reverse(self.task.num_examples(k, Split::Train)));
            cohorts.extend(members.chunks(size.max(1)).map(<[usize]>::to_vec));
        }
        cohorts
    }

    fn train_cohort(
        &mut self,
        cohort: &[usize],
        round: u64,
        config: &ClientConfig,
        prox: Option<(&Payload, f64)>,
    ) -> Result<Vec<Trained>> {
        let t0 = Instant::now();
        let Some(trainer) = self.task.cohort() else {
            return Ok(Vec::new());
        };
        // Every member starts its training of the round here, all at once.
        for &k in cohort {
            phase::reached(|| RunPhase::Training { round, client: k });
        }
        let members: Vec<CohortMember<'_, _>> = cohort
            .iter()
            .map(|&k| CohortMember {
                client: k,
                model: self.clients[k].model(),
                trainable: self.clients[k].trainable(),
            })
            .collect();
        let outcomes = trainer.train_cohort(&members, round, config, prox)?;
        drop(members);
        if outcomes.len() != cohort.len() {
            return Err(FedError::Task(format!(
                "the cohort trainer returned {} outcomes for {} clients",
                outcomes.len(),
                cohort.len()
            )));
        }
        let seconds = t0.elapsed().as_secs_f64() / cohort.len().max(1) as f64;
        Ok(cohort
            .iter()
            .zip(outcomes)
            .map(|(&k, outcome)| {
                let trained = outcome.map(|o| {
                    let examples = self.task.num_examples(k, Split::Train);
                    self.clients[k].finish_training(o.model, round, examples, o.train_loss)
                });
                (trained, seconds)
            })
            .collect())
    }
}

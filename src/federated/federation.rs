//! A federation before it runs: the task, one model per client, what is shared and the
//! settings. The in-process [`crate::Simulation`] takes all of it; a Flower node takes one
//! client of it ([`Federation::into_client`]).

use burn::tensor::backend::AutodiffBackend;

use super::client::ClientRuntime;
use super::simulation::SimulationConfig;
use super::task::FederatedTask;
use crate::error::{FedError, Result};
use crate::lora::{ShareSpec, common_frozen_a};

/// Everything a federated run is built from, before it runs.
pub struct Federation<B: AutodiffBackend, T: FederatedTask<B>> {
    /// Every client's data.
    pub task: T,
    /// One model per client, each with its own adapter seed.
    pub models: Vec<T::Model>,
    /// What travels.
    pub spec: ShareSpec,
    /// Rounds and local settings.
    pub config: SimulationConfig,
}

impl<B: AutodiffBackend, T: FederatedTask<B>> Federation<B, T> {
    /// The delta privacy reports use: one over the clients' training examples in total.
    pub fn privacy_delta(&self) -> f64 {
        super::task::privacy_delta(&self.task)
    }

    /// Client `client` alone, as a Flower node runs it: the task (whose other clients' data the
    /// node never touches) and the client's runtime. Under FFA-LoRA the client gets client 0's
    /// frozen `A`, as every client of the in-process simulation does.
    pub fn into_client(self, client: usize) -> Result<(T, ClientRuntime<B, T::Model>)> {
        let clients = self.models.len();
        if client >= clients {
            return Err(FedError::config(
                "partition-id",
                format!("{client} is out of range: the federation has {clients} clients"),
            ));
        }
        let mut models = self.models;
        let common = models
            .first()
            .and_then(|reference| common_frozen_a(&self.spec, reference));
        let model = models.swap_remove(client);
        drop(models);
        let mut runtime = ClientRuntime::new(client, model, self.spec);
        if let Some(common) = common {
            runtime.overwrite(&common)?;
        }
        Ok((self.task, runtime))
    }
}

//! A small synthetic federated task for the quick-start, tests and benchmarks.
//!
//! Points are drawn around `num_classes` Gaussian cluster centres shared by every client. Each
//! client labels the clusters with **its own permutation** of the classes when
//! `conflicting = true`: the clients disagree on what a cluster means, so no single shared
//! model can serve them all, the situation where personalisation matters. The model is a frozen
//! random feature layer followed by a frozen random linear head wrapped in
//! [`PersonalizedLora`]: all learning happens in the adapter.

use burn::module::{AutodiffModule, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::relu;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};
use crate::federated::{EvalBatch, FederatedTask, SimulationConfig, Split};
use crate::lora::{LoraConfig, PersonalizedLora, set_trainable};
use crate::seed::mix_seed;

/// Shape of the synthetic problem.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SyntheticConfig {
    /// Number of clients.
    pub num_clients: usize,
    /// Number of classes (= clusters).
    pub num_classes: usize,
    /// Input dimension.
    pub input_dim: usize,
    /// Width of the frozen feature layer.
    pub hidden_dim: usize,
    /// Training examples per client.
    pub train_per_client: usize,
    /// Test examples per client.
    pub test_per_client: usize,
    /// Standard deviation of the points around their centre (centres have unit-variance entries).
    pub noise: f32,
    /// Whether every client uses its own label permutation.
    pub conflicting: bool,
    /// Seed of the data and of the frozen weights.
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            num_clients: 4,
            num_classes: 4,
            input_dim: 16,
            hidden_dim: 32,
            train_per_client: 128,
            test_per_client: 64,
            noise: 0.5,
            conflicting: true,
            seed: 0,
        }
    }
}

struct ClientData {
    train_x: Vec<f32>,
    train_y: Vec<usize>,
    test_x: Vec<f32>,
    test_y: Vec<usize>,
}

/// The synthetic data of every client, implementing [`FederatedTask`] for [`SyntheticModel`].
pub struct SyntheticTask<B: Backend> {
    config: SyntheticConfig,
    clients: Vec<ClientData>,
    device: B::Device,
}

/// The synthetic task's model: frozen features, adapted head.
#[derive(Module, Debug)]
pub struct SyntheticModel<B: Backend> {
    /// Frozen random feature layer.
    pub features: Linear<B>,
    /// Frozen random head with a low-rank adapter.
    pub head: PersonalizedLora<B>,
}

impl<B: Backend> SyntheticModel<B> {
    /// Builds the model; the frozen weights depend only on `config.seed` (identical for every
    /// client), the adapter's `A` on `adapter_seed`.
    pub fn new(
        config: &SyntheticConfig,
        lora: &LoraConfig,
        adapter_seed: u64,
        device: &B::Device,
    ) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[config.seed, 10]));
        let features = seeded_linear(config.input_dim, config.hidden_dim, &mut rng, device);
        let head = seeded_linear(config.hidden_dim, config.num_classes, &mut rng, device);
        Ok(Self {
            features: Linear {
                weight: set_trainable(features.weight, false),
                bias: features.bias.map(|b| set_trainable(b, false)),
            },
            head: PersonalizedLora::from_linear(head, lora, adapter_seed)?,
        })
    }

    /// Logits `[N, classes]` of inputs `[N, input_dim]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head.forward(relu(self.features.forward(x)))
    }
}

fn seeded_linear<B: Backend>(
    d_in: usize,
    d_out: usize,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Linear<B> {
    let bound = 1.0 / (d_in as f32).sqrt();
    let mut draw =
        |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
    let weight = Tensor::from_data(TensorData::new(draw(d_in * d_out), [d_in, d_out]), device);
    let bias = Tensor::from_data(TensorData::new(draw(d_out), [d_out]), device);
    let mut linear = LinearConfig::new(d_in, d_out).init::<B>(device);
    linear.weight = Param::from_tensor(weight);
    linear.bias = Some(Param::from_tensor(bias));
    linear
}

/// The quick start's federation: the data, adapters and local settings that
/// `examples/quickstart.rs` runs in one process and that a Flower node started with
/// `--task synthetic --partition-id I --num-partitions N` joins as client `I`, with the same
/// seeds, so the two train exactly the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quickstart {
    /// The clients' data (and the frozen weights' seed).
    pub data: SyntheticConfig,
    /// The adapters (rank 4, alpha 8).
    pub lora: LoraConfig,
    /// Rounds and local settings: 10 rounds of 3 epochs, batch 16, AdamW at lr 1e-2.
    pub simulation: SimulationConfig,
}

impl Quickstart {
    /// The quick start with `num_clients` clients (the example uses 6) of 192 training
    /// examples each.
    pub fn new(num_clients: usize) -> Self {
        Self {
            data: SyntheticConfig {
                num_clients,
                train_per_client: 192,
                ..SyntheticConfig::default()
            },
            lora: LoraConfig::new(4, 8.0),
            simulation: SimulationConfig {
                rounds: 10,
                local_epochs: 3,
                batch_size: 16,
                lr: 1e-2,
                ..SimulationConfig::default()
            },
        }
    }

    /// The seed of client `client`'s adapter (its private `A`).
    pub fn adapter_seed(client: usize) -> u64 {
        1000 + client as u64
    }

    /// Every client's data.
    pub fn task<B: Backend>(&self, device: &B::Device) -> Result<SyntheticTask<B>> {
        SyntheticTask::new(self.data, device)
    }

    /// Client `client`'s model, with its own adapter seed.
    pub fn model<B: Backend>(
        &self,
        client: usize,
        device: &B::Device,
    ) -> Result<SyntheticModel<B>> {
        SyntheticModel::new(&self.data, &self.lora, Self::adapter_seed(client), device)
    }

    /// One model per client.
    pub fn models<B: Backend>(&self, device: &B::Device) -> Result<Vec<SyntheticModel<B>>> {
        (0..self.data.num_clients)
            .map(|k| self.model(k, device))
            .collect()
    }
}

/// Inputs `[N, input_dim]`, labels as a tensor `[N]`, and the same labels on the host.
pub type SyntheticBatch<B> = (Tensor<B, 2>, Tensor<B, 1, Int>, Vec<usize>);

impl<B: Backend> SyntheticTask<B> {
    /// Generates every client's data.
    pub fn new(config: SyntheticConfig, device: &B::Device) -> Result<Self> {
        if config.num_clients == 0 || config.num_classes < 2 || config.input_dim == 0 {
            return Err(FedError::config(
                "synthetic",
                "needs at least 1 client, 2 classes and 1 input dimension",
            ));
        }
        if !(config.noise.is_finite() && config.noise >= 0.0) {
            return Err(FedError::config(
                "noise",
                format!("must be >= 0, got {}", config.noise),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[config.seed, 11]));
        let unit =
            Normal::new(0.0f32, 1.0).map_err(|e| FedError::config("noise", e.to_string()))?;
        let centres: Vec<f32> = (0..config.num_classes * config.input_dim)
            .map(|_| unit.sample(&mut rng))
            .collect();
        let clients = (0..config.num_clients)
            .map(|k| {
                let mut labels: Vec<usize> = (0..config.num_classes).collect();
                if config.conflicting && k > 0 {
                    labels.shuffle(&mut rng);
                }
                let sample = |n: usize, rng: &mut ChaCha8Rng| {
                    let mut x = Vec::with_capacity(n * config.input_dim);
                    let mut y = Vec::with_capacity(n);
                    for i in 0..n {
                        let cluster = i % config.num_classes;
                        let centre = &centres[cluster * config.input_dim..][..config.input_dim];
                        x.extend(centre.iter().map(|c| c + config.noise * unit.sample(rng)));
                        y.push(labels[cluster]);
                    }
                    (x, y)
                };
                let (train_x, train_y) = sample(config.train_per_client, &mut rng);
                let (test_x, test_y) = sample(config.test_per_client, &mut rng);
                ClientData {
                    train_x,
                    train_y,
                    test_x,
                    test_y,
                }
            })
            .collect();
        Ok(Self {
            config,
            clients,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SyntheticConfig {
        &self.config
    }

    /// Inputs `[N, input_dim]` and labels `[N]` of examples `batch` of a client's split.
    pub fn batch<BB: Backend>(
        &self,
        client: usize,
        split: Split,
        batch: &[usize],
        device: &BB::Device,
    ) -> Result<SyntheticBatch<BB>> {
        let data = self
            .clients
            .get(client)
            .ok_or_else(|| FedError::Task(format!("no client {client}")))?;
        let (xs, ys) = match split {
            Split::Train => (&data.train_x, &data.train_y),
            Split::Test | Split::GlobalTest => (&data.test_x, &data.test_y),
        };
        let d = self.config.input_dim;
        let mut x = Vec::with_capacity(batch.len() * d);
        let mut y = Vec::with_capacity(batch.len());
        for &i in batch {
            let label = *ys
                .get(i)
                .ok_or_else(|| FedError::Task(format!("client {client} has no example {i}")))?;
            x.extend_from_slice(&xs[i * d..(i + 1) * d]);
            y.push(label);
        }
        let targets: Vec<i64> = y.iter().map(|&v| v as i64).collect();
        Ok((
            Tensor::from_data(TensorData::new(x, [batch.len(), d]), device),
            Tensor::from_data(TensorData::new(targets, [batch.len()]), device),
            y,
        ))
    }
}

impl<B: AutodiffBackend> FederatedTask<B> for SyntheticTask<B> {
    type Model = SyntheticModel<B>;

    fn num_clients(&self) -> usize {
        self.config.num_clients
    }

    fn num_classes(&self) -> usize {
        self.config.num_classes
    }

    fn num_examples(&self, _client: usize, split: Split) -> usize {
        match split {
            Split::Train => self.config.train_per_client,
            Split::Test => self.config.test_per_client,
            Split::GlobalTest => 0,
        }
    }

    fn device(&self) -> B::Device {
        self.device.clone()
    }

    fn loss(&self, model: &Self::Model, client: usize, batch: &[usize]) -> Result<Tensor<B, 1>> {
        let (x, y, _) = self.batch::<B>(client, Split::Train, batch, &self.device)?;
        let loss = CrossEntropyLossConfig::new().init(&self.device);
        Ok(loss.forward(model.forward(x), y))
    }

    fn evaluate(
        &self,
        model: &<Self::Model as AutodiffModule<B>>::InnerModule,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> Result<EvalBatch> {
        let (x, _, targets) = self.batch::<B::InnerBackend>(client, split, batch, &self.device)?;
        EvalBatch::from_logits(model.forward(x), targets)
    }
}

//! # fedvlm
//!
//! Federated, personalised, parameter-efficient fine-tuning on [burn](https://burn.dev).
//!
//! **pLoRA** (the FedVLM paper) adds a low-rank update `(alpha/r) B A` to frozen weights; each
//! client keeps its `A` private and shares only `B`, which the server averages, so clients
//! share what generalises and keep what personalises. This crate provides the adapter layer
//! ([`PersonalizedLora`]), the sharing rules it is compared with ([`Sharing`]), aggregation
//! strategies with Flower's math ([`FedAvg`], [`FedProx`], [`strategy::FedAdam`], robust and
//! differentially private ones in [`strategy`]), a
//! self-describing payload format, a simulation runner over K clients, a Flower node to run the
//! same clients across machines, partitioners and metrics.
//!
//! Where each concern lives:
//! * [`params`]: named tensors and the payload wire format, the ground floor.
//! * [`lora`]: the adapter layer, its config, **the sharing rule** ([`lora::Sharing`]) and what
//!   travels under it ([`lora::ShareSpec`], [`lora::collect_shared`], [`lora::apply_payload`]).
//! * [`federated`]: one client's local work ([`federated::ClientRuntime`]), the server, the
//!   task trait, the simulation, reports and checkpoints.
//! * [`strategy`]: server-side aggregation.
//! * [`partition`]: splitting a dataset over clients.
//! * [`flower`] (feature `flower`, on by default): a native Flower SuperNode running a client.
//! * [`metrics`]: accuracy, macro precision/recall/F1, loss.
//! * [`privacy`]: differential-privacy accounting (an RDP accountant matching Opacus 1.6, and the
//!   noise multiplier for a target epsilon).
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::LinearConfig;
//! use fedvlm::federated::{collect_shared, ShareSpec};
//! use fedvlm::{LoraConfig, PersonalizedLora, Sharing};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let base = LinearConfig::new(16, 8).init::<B>(&device);
//! let layer = PersonalizedLora::from_linear(base, &LoraConfig::paper(), 7)?;
//!
//! // pLoRA: only B travels.
//! let payload = collect_shared(&layer, &ShareSpec::new(Sharing::PLora));
//! assert_eq!(payload.names().collect::<Vec<_>>(), ["lora_b"]);
//! assert_eq!(payload.tensors["lora_b"].shape, [8, 4]);
//! # Ok::<(), fedvlm::FedError>(())
//! ```

#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod experiments;
pub mod federated;
#[cfg(feature = "flower")]
pub mod flower;
mod guard;
pub mod lora;
pub mod metrics;
pub mod models;
pub mod params;
pub mod partition;
pub mod privacy;
pub mod seed;
pub mod strategy;
pub mod synthetic;

pub use error::{FedError, Result};
pub use federated::{FederatedTask, Simulation, SimulationConfig};
pub use lora::{LoraConfig, PersonalizedLora, Sharing};
pub use strategy::{FedAvg, FedProx, Strategy};

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

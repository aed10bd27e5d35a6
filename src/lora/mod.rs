//! Low-rank adapters: the layer ([`PersonalizedLora`]), its configuration ([`LoraConfig`]) and
//! the rule that decides which of its tensors train and which travel ([`Sharing`]).

mod adaptable;
mod config;
mod freeze;
mod layer;
mod sharing;

pub use adaptable::{Dense, Pointwise};
pub use config::LoraConfig;
pub use freeze::{apply_sharing, freeze_all};
pub use layer::{PersonalizedLora, set_trainable};
pub use sharing::{AdapterMatrix, Sharing};

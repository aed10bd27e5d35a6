//! Low-rank adapters: the layer ([`PersonalizedLora`]), its configuration ([`LoraConfig`]),
//! the rule that decides which of its tensors train and which travel ([`Sharing`], in
//! `sharing.rs`), what travels under it ([`ShareSpec`], [`collect_shared`], [`apply_payload`],
//! in `exchange.rs`), and
//! Hugging Face PEFT's adapter files ([`save_peft_adapter`], [`load_peft_adapter`]).

mod adaptable;
mod config;
mod exchange;
mod freeze;
mod layer;
pub mod peft;
mod sharing;

pub use adaptable::{Dense, Pointwise};
pub use config::LoraConfig;
pub use exchange::{
    ShareSpec, apply_payload, collect_client_state, collect_shared, common_frozen_a,
};
pub use freeze::{apply_sharing, check_trainable, freeze_all};
pub use layer::{PersonalizedLora, set_trainable};
pub use peft::{
    PEFT_CONFIG_FILE, PEFT_FORMAT_VERSION, PEFT_KEY_ROOT, PEFT_WEIGHTS_FILE, PeftAdapterConfig,
    PeftAutoMapping, PeftExport, load_peft_adapter, peft_key, save_peft_adapter,
};
pub use sharing::{AdapterMatrix, Sharing};

//! Named tensors, the ground floor every other concern builds on: the wire format
//! ([`Payload`]), module paths and what lives at them ([`path`]), reading and writing named
//! tensors of any burn module ([`state`]), and a client's contribution to a round
//! ([`ClientUpdate`]).
//!
//! Nothing here knows a sharing rule, a strategy or a simulation: [`crate::lora`] decides what
//! travels, [`crate::strategy`] aggregates and [`crate::federated`] runs rounds, all on top of
//! these types.

pub mod path;
pub mod payload;
pub mod state;
mod update;

pub use path::{AdapterMatrix, PathTracker, TensorRole};
pub use payload::{
    PAYLOAD_FORMAT, PAYLOAD_VERSION, Payload, PayloadError, TensorValues, WireDtype,
};
pub use state::{apply_tensors, collect_where, parameter_shapes};
pub use update::ClientUpdate;

//! A native Flower 1.42 SuperNode: the Fleet API (protobuf over HTTP) without Python.
//!
//! [`FlowerNode`] registers with a Flower SuperLink, pulls instructions, hands each one to a
//! [`NodeHandler`] and pushes the reply, speaking the protocol a stock `flower-supernode` speaks.
//! [`NodeApp`] is the handler that runs a fedvlm client (the same [`crate::federated::ClientRuntime`]
//! the in-process simulation runs) behind the node, with Flower's record keys
//! ([`client_app::keys`]). Below it:
//! * [`records`]: Flower's records (`RecordDict`, `ArrayRecord`, `ConfigRecord`, `MetricRecord`).
//! * [`npy`]: the `.npy` files arrays travel as.
//! * [`objects`]: the content-addressed objects a message is split into, with their ids.
//! * [`fleet`]: the HTTP client (one call per RPC, signed headers, retries).
//! * [`auth`]: the node's ECDSA P-384 key and request signatures.
//! * [`node`]: the node's life (register, activate, heartbeat, poll loop, shutdown).
//! * [`signals`]: SIGINT/SIGTERM to a stop flag.
//! * [`npz`]: `.npz` files of initial arrays for a ServerApp.
//! * [`proto`]: the generated protobuf types.
//!
//! ```no_run
//! use fedvlm::flower::{
//!     ArrayRecord, FlowerNode, Instruction, MetricRecord, NodeConfig, NodeHandler, RecordDict,
//!     ReplyError, Value, stop_on_signals,
//! };
//!
//! /// Sends the global arrays back unchanged, weighted by 10 examples.
//! struct Echo;
//!
//! impl NodeHandler for Echo {
//!     fn handle(&mut self, ins: &Instruction) -> Result<RecordDict, ReplyError> {
//!         let metrics = MetricRecord::default().with("num-examples", Value::Sint64(10));
//!         let reply = RecordDict::new().with_metrics("metrics", metrics);
//!         match ins.message_type.as_str() {
//!             "train" => {
//!                 let arrays = ins.content.arrays("arrays");
//!                 let arrays = arrays.ok_or_else(|| ReplyError::new("no arrays"))?;
//!                 Ok(reply.with_arrays("arrays", arrays.clone()))
//!             }
//!             "evaluate" => Ok(reply),
//!             other => Err(ReplyError::new(format!("cannot do {other}"))),
//!         }
//!     }
//! }
//!
//! let stop = stop_on_signals()?;
//! let mut node = FlowerNode::connect(NodeConfig::insecure("127.0.0.1:9092"))?;
//! node.run(&mut Echo, &stop)?;
//! node.shutdown()?;
//! # Ok::<(), fedvlm::flower::FlowerError>(())
//! ```

pub mod auth;
pub mod client_app;
pub mod error;
pub mod fleet;
mod message;
pub mod node;
pub mod npy;
pub mod npz;
pub mod objects;
pub mod proto;
pub mod records;
pub mod signals;

pub use client_app::{NodeApp, NodeReport};
pub use error::FlowerError;
pub use node::{
    FlowerNode, Instruction, MessageStats, NodeConfig, NodeHandler, ReplyError, Transport,
    error_code,
};
pub use npy::{decode_npy, encode_npy};
pub use npz::encode_npz;
pub use objects::{CHUNK_SIZE, EncodedMessage, decode_message_content, encode_reply, object_id};
pub use records::{
    ArrayRecord, ConfigRecord, MetricRecord, NdArray, NpyDtype, Record, RecordDict, Value,
};
pub use signals::stop_on_signals;

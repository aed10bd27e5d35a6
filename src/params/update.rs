//! A client's contribution to a round.

use super::payload::Payload;

/// A client's contribution to a round: its shared tensors and example count (in the payload).
#[derive(Debug, Clone, PartialEq)]
pub struct ClientUpdate {
    /// The sending client.
    pub client: usize,
    /// Its shared tensors; `payload.num_examples` is FedAvg's weight.
    pub payload: Payload,
}

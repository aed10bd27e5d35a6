//! Model definitions in burn, with loaders for their published checkpoints.

mod error;

pub use error::WeightsError;

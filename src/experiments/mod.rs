//! The paper's experiments as library pipelines: the examples parse command lines and call
//! these, and the tests run them end to end on synthetic data.

pub mod cifar10;
pub mod rlaif;
pub mod vqa;

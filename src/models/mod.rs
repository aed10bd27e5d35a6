//! Model definitions in burn, with loaders for their published checkpoints.
//!
//! * [`mobilenet_v3`]: torchvision's MobileNetV3 small and large, loadable from torchvision
//!   `state_dict` files, with pLoRA adapters on the classifier and pointwise convolutions.
//! * [`florence2`]: Florence-2 (DaViT vision tower, projector, BART), loadable from Microsoft's
//!   and transformers' checkpoints.
//! * [`cast_floats`] / [`Precision`]: a loaded model's weights in f16 or bf16.

mod checkpoint;
mod error;
pub mod florence2;
pub mod mobilenet_v3;
mod precision;

pub use error::WeightsError;
pub use mobilenet_v3::{
    AdapterTargets, FoldedMobileNetV3, MobileNetV3, MobileNetV3Arch, MobileNetV3Config,
};
pub use precision::{Precision, cast_floats};

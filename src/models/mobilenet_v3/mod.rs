//! torchvision's MobileNetV3 (small and large) in burn, loadable from torchvision checkpoints,
//! with pLoRA adapters on the classifier and, optionally, the pointwise convolutions.
//!
//! * [`config`]: [`MobileNetV3Config`] and the block tables (torchvision's `_mobilenet_v3_conf`).
//! * [`blocks`]: the layers ([`FrozenBatchNorm2d`], squeeze-excitation, inverted residuals).
//! * [`model`]: [`MobileNetV3`] and its forward passes.
//! * [`weights`]: loading `.pth` / `.safetensors` state dicts with typed errors.
//! * [`folded`]: [`FoldedMobileNetV3`], the frozen backbone with batch norms folded, for fast
//!   inference on the CPU (the CIFAR-10 cache build).
//! * [`adapters`]: [`MobileNetV3::with_adapters`], [`MobileNetV3::freeze_backbone`].
//!
//! Module paths are torchvision's `state_dict` keys (`features.0.1.running_var`,
//! `classifier.3.weight`), so checkpoints load without remapping and adapter tensors travel
//! under names a PyTorch user recognises (`classifier.0.lora_b`).
//!
//! ```no_run
//! use burn::backend::Flex;
//! use fedvlm::models::{AdapterTargets, MobileNetV3, MobileNetV3Config};
//! use fedvlm::LoraConfig;
//!
//! let device = Default::default();
//! let config = MobileNetV3Config::small(10).with_seed(7);
//! // ImageNet weights: the 1000-class head is replaced by a fresh 10-class one.
//! let model = MobileNetV3::<Flex>::load_torchvision("mobilenet_v3_small-047dcff4.pth", &config, &device)?
//!     .with_adapters(&LoraConfig::paper(), AdapterTargets::Classifier, 1)?
//!     .freeze_backbone();
//! # Ok::<(), fedvlm::FedError>(())
//! ```

pub mod adapters;
pub mod blocks;
pub mod config;
pub mod folded;
mod init;
pub mod model;
pub mod weights;

pub use crate::lora::{Dense, Pointwise};
pub use adapters::AdapterTargets;
pub use blocks::FrozenBatchNorm2d;
pub use config::{MobileNetV3Arch, MobileNetV3Config};
pub use folded::FoldedMobileNetV3;
pub use model::MobileNetV3;

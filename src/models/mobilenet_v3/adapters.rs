//! pLoRA adapters on MobileNetV3, and freezing the backbone around them.
//!
//! Layers that may be adapted are held in enums ([`crate::lora::Dense`], [`crate::lora::Pointwise`]) so inserting an
//! adapter does not change the model's type; burn-store and fedvlm leave enum variant names
//! out of module paths, so an adapted `classifier.0` travels as `classifier.0.lora_b`.
//!
//! **Why the head is shared under every rule.** `classifier.3` is the new task head
//! (`last_channel -> num_classes`), freshly initialised when the checkpoint's head has another
//! number of classes. [`MobileNetV3::freeze_backbone`] keeps it trainable, and experiments
//! share and average it with FedAvg under every sharing rule (add it to the shared set with
//! `ShareSpec::also_share("classifier.3")`). The rules then differ only in what they do with
//! the adapters' `A` and `B`, so a comparison of pLoRA, FedAvg-LoRA, FFA-LoRA and FedSA-LoRA
//! isolates the adapters instead of mixing in a personalised or frozen head.

use burn::module::{ModuleMapper, Param};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::blocks::{BlockLayer, Feature, PointwiseNorm, PointwiseNormAct};
use super::init::derive_seed;
use super::model::MobileNetV3;
use crate::error::Result;
use crate::lora::{LoraConfig, set_trainable};
use crate::params::path::{PathTracker, TensorRole};

/// Path prefix of the task head, trainable after [`MobileNetV3::freeze_backbone`].
pub const HEAD_PREFIX: &str = "classifier.3.";

/// Which layers [`MobileNetV3::with_adapters`] adapts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterTargets {
    /// `classifier.0` only: the `576 -> 1024` (small) / `960 -> 1280` (large) linear layer.
    #[default]
    Classifier,
    /// `classifier.0` and every pointwise (1x1) convolution of the backbone: each block's
    /// expansion and projection and the last conv. The squeeze-excitation layers and the
    /// stem and depthwise convolutions stay plain.
    ClassifierAndPointwise,
}

impl<B: Backend> MobileNetV3<B> {
    /// Wraps the `targets` in [`crate::PersonalizedLora`] adapters (`B = 0`, so the model computes what
    /// it computed before). Adapter `i` (0 for `classifier.0`, then the pointwise convolutions
    /// in forward order) draws its `A` from a seed derived from `seed` and `i`, so every layer
    /// gets its own `A`; give each client its own `seed` for distinct private `A`s.
    ///
    /// The head `classifier.3` is never adapted. Call [`MobileNetV3::freeze_backbone`] (or
    /// [`crate::lora::freeze_all`]) afterwards to freeze everything else.
    ///
    /// # Errors
    /// [`crate::FedError::InvalidConfig`] for an invalid `config`, [`crate::FedError::UnsupportedLayer`] if a
    /// target already carries an adapter.
    pub fn with_adapters(
        self,
        config: &LoraConfig,
        targets: AdapterTargets,
        seed: u64,
    ) -> Result<Self> {
        config.validate()?;
        let mut index = 0u64;
        let mut next_seed = || {
            let s = derive_seed(seed, index);
            index += 1;
            s
        };
        let (dense, act, dropout, head) = self.classifier;
        let dense = dense.adapt(config, next_seed(), "classifier.0")?;
        let classifier = (dense, act, dropout, head);
        let features = match targets {
            AdapterTargets::Classifier => self.features,
            AdapterTargets::ClassifierAndPointwise => self
                .features
                .into_iter()
                .enumerate()
                .map(|(i, feature)| adapt_feature(feature, i, config, &mut next_seed))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self {
            features,
            classifier,
        })
    }

    /// Freezes every parameter except the adapter matrices (left as they are, so a sharing
    /// rule applied with [`crate::lora::apply_sharing`] before or after still holds) and the
    /// head `classifier.3`, which is made trainable: it is the new task head, trained by every
    /// client and shared with FedAvg under every rule (see the [module docs](self)).
    pub fn freeze_backbone(self) -> Self {
        let mut mapper = FreezeBackbone {
            path: PathTracker::default(),
        };
        self.map(&mut mapper)
    }

    /// Paths of the adapted layers (`classifier.0`, `features.1.block.0.0`, ...).
    pub fn adapter_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        for (i, feature) in self.features.iter().enumerate() {
            match feature {
                Feature::LastConv(layers) if layers.0.is_adapted() => {
                    paths.push(format!("features.{i}.0"));
                }
                Feature::InvertedResidual(block) => {
                    for (j, layer) in block.block.iter().enumerate() {
                        let adapted = match layer {
                            BlockLayer::Expand(layers) => layers.0.is_adapted(),
                            BlockLayer::Project(layers) => layers.0.is_adapted(),
                            _ => false,
                        };
                        if adapted {
                            paths.push(format!("features.{i}.block.{j}.0"));
                        }
                    }
                }
                _ => {}
            }
        }
        if self.classifier.0.is_adapted() {
            paths.insert(0, "classifier.0".to_string());
        }
        paths
    }
}

fn adapt_feature<B: Backend>(
    feature: Feature<B>,
    index: usize,
    config: &LoraConfig,
    next_seed: &mut impl FnMut() -> u64,
) -> Result<Feature<B>> {
    Ok(match feature {
        Feature::Stem(layers) => Feature::Stem(layers),
        Feature::LastConv(layers) => Feature::LastConv(adapt_pointwise_norm_act(
            layers,
            config,
            next_seed(),
            &format!("features.{index}.0"),
        )?),
        Feature::InvertedResidual(mut block) => {
            block.block = block
                .block
                .into_iter()
                .enumerate()
                .map(|(j, layer)| {
                    let path = format!("features.{index}.block.{j}.0");
                    adapt_block_layer(layer, config, next_seed, &path)
                })
                .collect::<Result<Vec<_>>>()?;
            Feature::InvertedResidual(block)
        }
    })
}

fn adapt_block_layer<B: Backend>(
    layer: BlockLayer<B>,
    config: &LoraConfig,
    next_seed: &mut impl FnMut() -> u64,
    path: &str,
) -> Result<BlockLayer<B>> {
    Ok(match layer {
        BlockLayer::Expand(layers) => {
            BlockLayer::Expand(adapt_pointwise_norm_act(layers, config, next_seed(), path)?)
        }
        BlockLayer::Project(layers) => {
            BlockLayer::Project(adapt_pointwise_norm(layers, config, next_seed(), path)?)
        }
        other => other,
    })
}

fn adapt_pointwise_norm_act<B: Backend>(
    (conv, norm, act): PointwiseNormAct<B>,
    config: &LoraConfig,
    seed: u64,
    path: &str,
) -> Result<PointwiseNormAct<B>> {
    Ok((conv.adapt(config, seed, path)?, norm, act))
}

fn adapt_pointwise_norm<B: Backend>(
    (conv, norm): PointwiseNorm<B>,
    config: &LoraConfig,
    seed: u64,
    path: &str,
) -> Result<PointwiseNorm<B>> {
    Ok((conv.adapt(config, seed, path)?, norm))
}

struct FreezeBackbone {
    path: PathTracker,
}

impl<B: Backend> ModuleMapper<B> for FreezeBackbone {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match self.path.role() {
            TensorRole::Adapter(_) => param,
            TensorRole::Other => {
                let trainable = self.path.path().starts_with(HEAD_PREFIX);
                set_trainable(param, trainable)
            }
        }
    }
}

//! Florence-2's DaViT vision tower (transformers' `Florence2VisionBackbone`).
//!
//! Four stages; each opens with a patch-embedding convolution ([`ConvEmbed`]) and runs
//! `depths[i]` [`VisionBlock`]s, a [`SpatialBlock`] (window attention) then a [`ChannelBlock`]
//! (grouped channel attention). A 768x768 image gives grids 192, 96, 48, 24 and 576 output
//! tokens of the last stage's width.
//!
//! Module paths are transformers' native `state_dict` keys below `model.vision_tower.`:
//! `convs.0.conv.weight`, `convs.1.norm.weight` (burn's `gamma`),
//! `blocks.2.1.spatial_block.window_attn.qkv.weight`, `blocks.0.0.channel_block.ffn.fc2.bias`,
//! ... Microsoft's original keys map to them through [`ORIGINAL_KEY_RULES`].
//!
//! * [`config`]: [`DavitConfig`] (`Florence2VisionConfig`).
//! * [`embed`], [`spatial`], [`window`], [`channel`], [`layers`]: the layers.
//! * [`weights`]: loading the tower and the projector from either checkpoint layout.

pub mod channel;
pub mod config;
pub mod embed;
pub mod layers;
pub mod spatial;
pub mod weights;
pub mod window;

use burn::prelude::*;

pub use channel::{ChannelAttention, ChannelBlock};
pub use config::DavitConfig;
pub use embed::ConvEmbed;
pub use spatial::SpatialBlock;
pub use window::WindowAttention;

use crate::error::{FedError, Result};
use layers::to_tokens;

/// Regex rules that turn the vision-tower keys of Microsoft's original checkpoints
/// (`pytorch_model.bin`, remote code) into transformers' native keys without the `model.`
/// prefix, `vision_tower.<burn path in Davit>`:
///
/// | original | native |
/// |---|---|
/// | `vision_tower.convs.{i}.proj.*` | `vision_tower.convs.{i}.conv.*` |
/// | `vision_tower.convs.{i}.norm.*` | unchanged |
/// | `...{spatial,channel}_block.conv{1,2}.fn.dw.*` | `...{spatial,channel}_block.conv{1,2}.*` |
/// | `...{window,channel}_attn.norm.*` | `...norm1.*` |
/// | `...{window,channel}_attn.fn.{qkv,proj}.*` | `...{window,channel}_attn.{qkv,proj}.*` |
/// | `...ffn.norm.*` | `...norm2.*` |
/// | `...ffn.fn.net.fc{1,2}.*` | `...ffn.fc{1,2}.*` |
///
/// Every other original vision key keeps its name. The rules are disjoint and none matches
/// another's output, so applying them chained (burn-store's `KeyRemapper`, for example
/// `PytorchStore::with_key_remapping` once per rule) or first-match-wins gives the same names.
/// DaViT's `vision_tower.norms.*` and `vision_tower.head.*` have no place in the model (see
/// [`ORIGINAL_UNUSED_PREFIXES`]).
pub const ORIGINAL_KEY_RULES: &[(&str, &str)] = &[
    (
        r"^vision_tower\.convs\.(\d+)\.proj\.",
        "vision_tower.convs.${1}.conv.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.conv([12])\.fn\.dw\.",
        "vision_tower.blocks.${1}.${2}.${3}_block.conv${4}.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.spatial_block\.window_attn\.norm\.",
        "vision_tower.blocks.${1}.${2}.spatial_block.norm1.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.channel_block\.channel_attn\.norm\.",
        "vision_tower.blocks.${1}.${2}.channel_block.norm1.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial_block\.window|channel_block\.channel)_attn\.fn\.",
        "vision_tower.blocks.${1}.${2}.${3}_attn.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.ffn\.norm\.",
        "vision_tower.blocks.${1}.${2}.${3}_block.norm2.",
    ),
    (
        r"^vision_tower\.blocks\.(\d+)\.(\d+)\.(spatial|channel)_block\.ffn\.fn\.net\.",
        "vision_tower.blocks.${1}.${2}.${3}_block.ffn.",
    ),
];

/// Key prefixes (after [`ORIGINAL_KEY_RULES`]) of DaViT's classification-time final norm
/// (`norms`) and head, which Florence-2 never uses. Microsoft's remote code deletes both before
/// saving, so its files should not have them; a loader tolerates them (skips them on purpose)
/// if a file does.
pub const ORIGINAL_UNUSED_PREFIXES: &[&str] = &["vision_tower.norms.", "vision_tower.head."];

/// One (spatial block, channel block) pair (transformers' `Florence2VisionBlock`).
#[derive(Module, Debug)]
pub struct VisionBlock<B: Backend> {
    /// Window attention block.
    pub spatial_block: SpatialBlock<B>,
    /// Channel attention block.
    pub channel_block: ChannelBlock<B>,
}

impl<B: Backend> VisionBlock<B> {
    /// `[N, C, H, W] -> [N, C, H, W]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.channel_block.forward(self.spatial_block.forward(x))
    }
}

/// The output of one stage: its tokens and grid.
#[derive(Debug, Clone)]
pub struct StageOutput<B: Backend> {
    /// `[N, H_i * W_i, C_i]`, tokens in row-major order.
    pub tokens: Tensor<B, 3>,
    /// `(H_i, W_i)`.
    pub grid: (usize, usize),
}

/// Florence-2's DaViT vision tower; build it with [`DavitConfig::init`].
#[derive(Module, Debug)]
pub struct Davit<B: Backend> {
    /// Each stage's patch embedding.
    pub convs: Vec<ConvEmbed<B>>,
    /// Each stage's blocks.
    pub blocks: Vec<Vec<VisionBlock<B>>>,
    /// Channels of the input image.
    pub in_channels: usize,
}

impl DavitConfig {
    /// A tower with burn's default random initialisation (load a checkpoint into it, see
    /// [`weights`]).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] if [`DavitConfig::validate`] fails.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Davit<B>> {
        self.validate()?;
        let stages = 0..self.num_stages();
        // Spatial and channel blocks take alternate rates of the linear schedule.
        let mut rates = self.drop_path_rates().into_iter();
        let mut next_rate = || rates.next().unwrap_or(0.0);
        Ok(Davit {
            convs: stages
                .clone()
                .map(|stage| ConvEmbed::new(self, stage, device))
                .collect(),
            blocks: stages
                .map(|stage| {
                    (0..self.depths[stage])
                        .map(|_| VisionBlock {
                            spatial_block: SpatialBlock::new(self, stage, next_rate(), device),
                            channel_block: ChannelBlock::new(self, stage, next_rate(), device),
                        })
                        .collect()
                })
                .collect(),
            in_channels: self.in_channels,
        })
    }
}

impl<B: Backend> Davit<B> {
    /// The last stage's tokens `[N, h*w, C_last]` and grid `(h, w)` of `pixel_values`
    /// `[N, in_channels, H, W]` (transformers' `last_hidden_state`, flattened row-major).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] (field `pixel_values`) if the batch is empty, the channels
    /// are not the configured ones or the image is too small for a stage's convolution.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Result<(Tensor<B, 3>, (usize, usize))> {
        self.check_input(&pixel_values)?;
        let x = self.run(pixel_values, |_| {});
        let [_, _, height, width] = x.dims();
        Ok((to_tokens(x), (height, width)))
    }

    /// Every stage's output, in order (the last is [`Davit::forward`]'s).
    ///
    /// # Errors
    /// As [`Davit::forward`].
    pub fn forward_stages(&self, pixel_values: Tensor<B, 4>) -> Result<Vec<StageOutput<B>>> {
        self.check_input(&pixel_values)?;
        let mut outputs = Vec::with_capacity(self.convs.len());
        self.run(pixel_values, |x| {
            let [_, _, height, width] = x.dims();
            outputs.push(StageOutput {
                tokens: to_tokens(x.clone()),
                grid: (height, width),
            });
        });
        Ok(outputs)
    }

    /// Runs the stages on `[N, C, H, W]`, calling `observe(output)` after each.
    fn run(
        &self,
        pixel_values: Tensor<B, 4>,
        mut observe: impl FnMut(&Tensor<B, 4>),
    ) -> Tensor<B, 4> {
        // The images follow the weights' float type (f16/bf16 after `cast_floats`).
        let mut x = match self.convs.first() {
            Some(first) => pixel_values.cast(first.conv.weight.val().dtype()),
            None => pixel_values,
        };
        for (conv, blocks) in self.convs.iter().zip(&self.blocks) {
            x = conv.forward(x);
            for block in blocks {
                x = block.forward(x);
            }
            observe(&x);
        }
        x
    }

    /// Checks the batch, the channels and that every stage's convolution has an output.
    fn check_input(&self, pixel_values: &Tensor<B, 4>) -> Result<()> {
        let [batch, channels, height, width] = pixel_values.dims();
        let bad = |reason: String| Err(FedError::config("pixel_values", reason));
        if batch == 0 {
            return bad("has an empty batch".into());
        }
        if channels != self.in_channels {
            return bad(format!(
                "has {channels} channels, the model expects {}",
                self.in_channels
            ));
        }
        let (mut h, mut w) = (height, width);
        for (stage, conv) in self.convs.iter().enumerate() {
            let [kernel, _] = conv.conv.kernel_size;
            let [stride, _] = conv.conv.stride;
            let pad = match conv.conv.padding {
                burn::nn::PaddingConfig2d::Explicit(top, ..) => top,
                _ => 0,
            };
            let out = |size: usize| {
                (size + 2 * pad >= kernel).then(|| (size + 2 * pad - kernel) / stride + 1)
            };
            match (out(h), out(w)) {
                (Some(oh), Some(ow)) => (h, w) = (oh, ow),
                _ => {
                    return bad(format!(
                        "is {height}x{width}, too small for stage {stage} ({h}x{w} before its {kernel}x{kernel} convolution)"
                    ));
                }
            }
        }
        Ok(())
    }
}

//! MobileNetV3's configuration: torchvision's `_mobilenet_v3_conf`, block table included.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// Which of the two published architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MobileNetV3Arch {
    /// `mobilenet_v3_small`: 11 blocks, last conv 96 -> 576, classifier 576 -> 1024 -> N.
    Small,
    /// `mobilenet_v3_large`: 15 blocks, last conv 160 -> 960, classifier 960 -> 1280 -> N.
    Large,
}

/// Hyper-parameters of a MobileNetV3, with torchvision's semantics
/// (`torchvision.models.mobilenet_v3_small(num_classes=.., width_mult=.., ...)`).
///
/// ```
/// use fedvlm::models::MobileNetV3Config;
/// let config = MobileNetV3Config::small(10).with_width_mult(0.5);
/// assert_eq!(config.last_channel(), 512);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MobileNetV3Config {
    /// Small or large.
    pub arch: MobileNetV3Arch,
    /// Outputs of the final linear layer (`classifier.3`).
    pub num_classes: usize,
    /// Channel multiplier: every channel count `c` of the block table and the classifier's
    /// hidden width become `make_divisible(c * width_mult, 8)`.
    #[serde(default = "default_width_mult")]
    pub width_mult: f64,
    /// torchvision's `reduced_tail`: halves the channels of the last blocks and the classifier.
    #[serde(default)]
    pub reduced_tail: bool,
    /// torchvision's `dilated`: the last blocks use dilation 2 instead of striding.
    #[serde(default)]
    pub dilated: bool,
    /// Dropout probability between the classifier's two linear layers (training only).
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// Seed of the random initialisation ([`super::MobileNetV3::new`]) and of a freshly
    /// initialised head when a checkpoint's head has another number of classes.
    #[serde(default)]
    pub seed: u64,
}

fn default_width_mult() -> f64 {
    1.0
}

fn default_dropout() -> f64 {
    0.2
}

/// Activation of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// `RE` in the paper's table.
    Relu,
    /// `HS` in the paper's table.
    Hardswish,
}

/// One inverted-residual block, channel counts already scaled by `width_mult`
/// (torchvision's `InvertedResidualConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockConfig {
    /// Input channels.
    pub input_channels: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Channels after the 1x1 expansion (no expansion layer when equal to the input).
    pub expanded_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Whether the block has a squeeze-excitation layer.
    pub use_se: bool,
    /// The block's activation.
    pub activation: ActivationKind,
    /// Configured stride (the depthwise conv strides by 1 instead when `dilation > 1`).
    pub stride: usize,
    /// Dilation of the depthwise conv.
    pub dilation: usize,
}

impl BlockConfig {
    /// Stride actually used by the depthwise convolution.
    pub fn depthwise_stride(&self) -> usize {
        if self.dilation > 1 { 1 } else { self.stride }
    }

    /// Whether the block adds its input to its output.
    pub fn use_res_connect(&self) -> bool {
        self.stride == 1 && self.input_channels == self.out_channels
    }

    /// Channels of the squeeze-excitation bottleneck: `make_divisible(expanded / 4, 8)`.
    pub fn squeeze_channels(&self) -> usize {
        make_divisible((self.expanded_channels / 4) as f64, 8)
    }
}

/// torchvision's `_make_divisible(v, divisor)`: the nearest multiple of `divisor` (at least
/// `divisor`), raised by `divisor` if rounding lost more than 10%.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    // `int(v + divisor / 2) // divisor * divisor` on non-negative values.
    let rounded = ((v + d / 2.0).floor() / d).floor() * d;
    let mut new_v = rounded.max(d);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

use ActivationKind::{Hardswish as HS, Relu as RE};

/// `(in, kernel, expanded, out, SE, activation, stride)` at width 1.0, as in the paper's tables.
type Row = (usize, usize, usize, usize, bool, ActivationKind, usize);

const LARGE: [Row; 15] = [
    (16, 3, 16, 16, false, RE, 1),
    (16, 3, 64, 24, false, RE, 2),
    (24, 3, 72, 24, false, RE, 1),
    (24, 5, 72, 40, true, RE, 2),
    (40, 5, 120, 40, true, RE, 1),
    (40, 5, 120, 40, true, RE, 1),
    (40, 3, 240, 80, false, HS, 2),
    (80, 3, 200, 80, false, HS, 1),
    (80, 3, 184, 80, false, HS, 1),
    (80, 3, 184, 80, false, HS, 1),
    (80, 3, 480, 112, true, HS, 1),
    (112, 3, 672, 112, true, HS, 1),
    (112, 5, 672, 160, true, HS, 2),
    (160, 5, 960, 160, true, HS, 1),
    (160, 5, 960, 160, true, HS, 1),
];

const SMALL: [Row; 11] = [
    (16, 3, 16, 16, true, RE, 2),
    (16, 3, 72, 24, false, RE, 2),
    (24, 3, 88, 24, false, RE, 1),
    (24, 5, 96, 40, true, HS, 2),
    (40, 5, 240, 40, true, HS, 1),
    (40, 5, 240, 40, true, HS, 1),
    (40, 5, 120, 48, true, HS, 1),
    (48, 5, 144, 48, true, HS, 1),
    (48, 5, 288, 96, true, HS, 2),
    (96, 5, 576, 96, true, HS, 1),
    (96, 5, 576, 96, true, HS, 1),
];

impl MobileNetV3Config {
    /// `mobilenet_v3_small(num_classes)`: width 1.0, dropout 0.2, seed 0.
    pub fn small(num_classes: usize) -> Self {
        Self::new(MobileNetV3Arch::Small, num_classes)
    }

    /// `mobilenet_v3_large(num_classes)`: width 1.0, dropout 0.2, seed 0.
    pub fn large(num_classes: usize) -> Self {
        Self::new(MobileNetV3Arch::Large, num_classes)
    }

    /// Either architecture with torchvision's defaults.
    pub fn new(arch: MobileNetV3Arch, num_classes: usize) -> Self {
        Self {
            arch,
            num_classes,
            width_mult: default_width_mult(),
            reduced_tail: false,
            dilated: false,
            dropout: default_dropout(),
            seed: 0,
        }
    }

    /// Returns the configuration with another number of classes.
    pub fn with_num_classes(mut self, num_classes: usize) -> Self {
        self.num_classes = num_classes;
        self
    }

    /// Returns the configuration with another channel multiplier.
    pub fn with_width_mult(mut self, width_mult: f64) -> Self {
        self.width_mult = width_mult;
        self
    }

    /// Returns the configuration with torchvision's `reduced_tail` set.
    pub fn with_reduced_tail(mut self, reduced_tail: bool) -> Self {
        self.reduced_tail = reduced_tail;
        self
    }

    /// Returns the configuration with torchvision's `dilated` set.
    pub fn with_dilated(mut self, dilated: bool) -> Self {
        self.dilated = dilated;
        self
    }

    /// Returns the configuration with another classifier dropout.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Returns the configuration with another initialisation seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks that `num_classes` is positive, `width_mult` finite and positive and `dropout`
    /// in `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        if self.num_classes == 0 {
            return Err(FedError::config("num_classes", "must be at least 1"));
        }
        if !(self.width_mult.is_finite() && self.width_mult > 0.0) {
            return Err(FedError::config(
                "width_mult",
                format!("must be finite and positive, got {}", self.width_mult),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(FedError::config(
                "dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        Ok(())
    }

    fn adjust(&self, channels: usize) -> usize {
        make_divisible(channels as f64 * self.width_mult, 8)
    }

    /// The inverted-residual blocks (`features.1` to `features.{len}`), scaled.
    pub fn blocks(&self) -> Vec<BlockConfig> {
        let (rows, tail_from): (&[Row], usize) = match self.arch {
            MobileNetV3Arch::Small => (&SMALL, 8),
            MobileNetV3Arch::Large => (&LARGE, 12),
        };
        rows.iter()
            .enumerate()
            .map(|(i, row)| self.block(row, i.cmp(&tail_from)))
            .collect()
    }

    /// Scales one row. torchvision divides the channels of the tail rows (`reduced_tail`)
    /// before scaling them and dilates them (`dilated`); the first tail row keeps its input,
    /// which comes from the untouched blocks.
    fn block(&self, row: &Row, tail: std::cmp::Ordering) -> BlockConfig {
        let &(inp, kernel, exp, out, use_se, activation, stride) = row;
        let divider = if self.reduced_tail { 2 } else { 1 };
        let tail_dilation = if self.dilated { 2 } else { 1 };
        let (inp, exp, out, dilation) = match tail {
            std::cmp::Ordering::Less => (inp, exp, out, 1),
            std::cmp::Ordering::Equal => (inp, exp, out / divider, tail_dilation),
            std::cmp::Ordering::Greater => {
                (inp / divider, exp / divider, out / divider, tail_dilation)
            }
        };
        BlockConfig {
            input_channels: self.adjust(inp),
            kernel,
            expanded_channels: self.adjust(exp),
            out_channels: self.adjust(out),
            use_se,
            activation,
            stride,
            dilation,
        }
    }

    /// Output channels of the stem (`features.0`): the first block's input.
    pub fn stem_channels(&self) -> usize {
        self.adjust(16)
    }

    /// Output channels of the last 1x1 conv: six times the last block's output; the width of
    /// [`super::MobileNetV3::features_pooled`].
    pub fn last_conv_channels(&self) -> usize {
        6 * self.blocks().last().map_or(0, |b| b.out_channels)
    }

    /// Hidden width of the classifier (`classifier.0`'s outputs), scaled like the blocks.
    pub fn last_channel(&self) -> usize {
        let divider = if self.reduced_tail { 2 } else { 1 };
        let base = match self.arch {
            MobileNetV3Arch::Small => 1024,
            MobileNetV3Arch::Large => 1280,
        };
        self.adjust(base / divider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        // Values computed with torchvision.models._utils._make_divisible.
        assert_eq!(make_divisible(16.0, 8), 16);
        assert_eq!(make_divisible(4.0, 8), 8);
        assert_eq!(make_divisible(22.0, 8), 24);
        assert_eq!(make_divisible(18.0, 8), 24);
        assert_eq!(make_divisible(44.0, 8), 48);
        assert_eq!(make_divisible(12.0, 8), 16);
        assert_eq!(make_divisible(30.0, 8), 32);
        assert_eq!(make_divisible(36.0, 8), 40);
        assert_eq!(make_divisible(60.0, 8), 64);
        assert_eq!(make_divisible(240.0 / 4.0, 8), 64);
    }

    #[test]
    fn full_size_tables_match_reference() {
        let small = MobileNetV3Config::small(1000);
        assert_eq!(small.blocks().len(), 11);
        assert_eq!(small.last_conv_channels(), 576);
        assert_eq!(small.last_channel(), 1024);
        let large = MobileNetV3Config::large(1000);
        assert_eq!(large.blocks().len(), 15);
        assert_eq!(large.last_conv_channels(), 960);
        assert_eq!(large.last_channel(), 1280);
        assert!(large.blocks()[0].use_res_connect());
        assert!(!small.blocks()[0].use_res_connect());
    }
}

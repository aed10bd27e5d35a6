//! [`DavitConfig`]: transformers' `Florence2VisionConfig`, field for field.

use serde::{Deserialize, Serialize};

use crate::error::{FedError, Result};

/// Hyper-parameters of Florence-2's DaViT vision tower and of its projector into the language
/// model, with the names and meaning of transformers' `Florence2VisionConfig` (the
/// `vision_config` of a native `config.json` deserialises into it; unknown fields such as
/// `initializer_range` are ignored, missing ones take transformers'
/// defaults, see [`DavitConfig::default`]).
///
/// All per-stage lists (`depths`, `patch_*`, `embed_dim`, `num_heads`, `num_groups`) have one
/// entry per stage.
///
/// ```
/// use fedvlm::models::florence2::davit::DavitConfig;
/// let config = DavitConfig::base();
/// config.validate()?;
/// assert_eq!(config.embed_dim, [128, 256, 512, 1024]);
/// assert_eq!(config.projection_dim, 768);
/// # Ok::<(), fedvlm::FedError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DavitConfig {
    /// Channels of the input image (3).
    pub in_channels: usize,
    /// Number of (spatial block, channel block) pairs in each stage.
    pub depths: Vec<usize>,
    /// Kernel size of each stage's patch-embedding convolution.
    pub patch_size: Vec<usize>,
    /// Stride of each stage's patch-embedding convolution.
    pub patch_stride: Vec<usize>,
    /// Zero padding (all four sides) of each stage's patch-embedding convolution.
    pub patch_padding: Vec<usize>,
    /// Whether a stage's LayerNorm comes before its convolution (over the input channels)
    /// instead of after it (over the output channels).
    pub patch_prenorm: Vec<bool>,
    /// Channels of each stage.
    pub embed_dim: Vec<usize>,
    /// Heads of each stage's window attention.
    pub num_heads: Vec<usize>,
    /// Channel groups of each stage's channel attention.
    pub num_groups: Vec<usize>,
    /// Side of the square attention windows, in tokens.
    pub window_size: usize,
    /// Hidden width of the MLPs as a multiple of the stage's channels (`int(C * mlp_ratio)`).
    pub mlp_ratio: f64,
    /// Whether the attention `qkv` projections have a bias.
    pub qkv_bias: bool,
    /// The MLPs' activation; only `"gelu"` (exact, erf-based) is supported.
    pub activation_function: String,
    /// Width of the image features handed to the language model (the projector's output).
    pub projection_dim: usize,
    /// Rows of the projector's learned row and column position tables (largest grid side).
    pub max_position_embeddings: usize,
    /// Rows of the projector's cosine temporal table (largest number of frames).
    pub max_temporal_embeddings: usize,
    /// Stochastic depth: the drop-path probability of the last block, rising linearly from 0
    /// over the `2 * sum(depths)` spatial and channel blocks ([`DavitConfig::drop_path_rates`]).
    /// Applied only while training (on an autodiff backend), like dropout.
    pub drop_path_rate: f64,
}

impl Default for DavitConfig {
    /// transformers' `Florence2VisionConfig()` defaults: the base tower, but with
    /// `projection_dim` 1024 (the base checkpoint uses 768, see [`DavitConfig::base`]).
    fn default() -> Self {
        Self {
            in_channels: 3,
            depths: vec![1, 1, 9, 1],
            patch_size: vec![7, 3, 3, 3],
            patch_stride: vec![4, 2, 2, 2],
            patch_padding: vec![3, 1, 1, 1],
            patch_prenorm: vec![false, true, true, true],
            embed_dim: vec![128, 256, 512, 1024],
            num_heads: vec![4, 8, 16, 32],
            num_groups: vec![4, 8, 16, 32],
            window_size: 12,
            mlp_ratio: 4.0,
            qkv_bias: true,
            activation_function: "gelu".to_string(),
            projection_dim: 1024,
            max_position_embeddings: 50,
            max_temporal_embeddings: 100,
            drop_path_rate: 0.1,
        }
    }
}

impl DavitConfig {
    /// `microsoft/Florence-2-base`: channels 128/256/512/1024, heads and groups 4/8/16/32,
    /// depths 1/1/9/1, window 12, projection to 768.
    pub fn base() -> Self {
        Self {
            projection_dim: 768,
            ..Self::default()
        }
    }

    /// `microsoft/Florence-2-large`: channels 256/512/1024/2048, heads and groups
    /// 8/16/32/64, depths 1/1/9/1, window 12, projection to 1024.
    pub fn large() -> Self {
        Self {
            embed_dim: vec![256, 512, 1024, 2048],
            num_heads: vec![8, 16, 32, 64],
            num_groups: vec![8, 16, 32, 64],
            projection_dim: 1024,
            ..Self::default()
        }
    }

    /// Number of stages (`embed_dim.len()`).
    pub fn num_stages(&self) -> usize {
        self.embed_dim.len()
    }

    /// Channels of the last stage, the width of the tokens the tower outputs.
    pub fn out_dim(&self) -> usize {
        self.embed_dim.last().copied().unwrap_or(0)
    }

    /// Each block's drop-path probability, spatial and channel blocks interleaved in order
    /// (stage by stage): `torch.linspace(0, drop_path_rate, 2 * sum(depths))`, as transformers'
    /// `Florence2VisionBackbone` assigns them.
    pub fn drop_path_rates(&self) -> Vec<f64> {
        let n = 2 * self.depths.iter().sum::<usize>();
        match n {
            0 => Vec::new(),
            1 => vec![0.0],
            _ => (0..n)
                .map(|i| self.drop_path_rate * i as f64 / (n - 1) as f64)
                .collect(),
        }
    }

    /// Hidden width of stage `stage`'s MLPs, `int(embed_dim[stage] * mlp_ratio)` as in Python.
    pub fn mlp_hidden(&self, stage: usize) -> usize {
        (self.embed_dim[stage] as f64 * self.mlp_ratio) as usize
    }

    /// Checks that the per-stage lists have one entry per stage, that every size is positive,
    /// that each stage's channels split evenly into its heads and groups, that the MLP hidden
    /// width is positive, that the last stage's width is even (the cosine temporal table
    /// interleaves sines and cosines) and that the activation is `"gelu"`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<()> {
        let stages = self.num_stages();
        if stages == 0 {
            return Err(FedError::config(
                "embed_dim",
                "must have at least one stage",
            ));
        }
        let lengths = [
            ("depths", self.depths.len()),
            ("patch_size", self.patch_size.len()),
            ("patch_stride", self.patch_stride.len()),
            ("patch_padding", self.patch_padding.len()),
            ("patch_prenorm", self.patch_prenorm.len()),
            ("num_heads", self.num_heads.len()),
            ("num_groups", self.num_groups.len()),
        ];
        for (field, len) in lengths {
            if len != stages {
                return Err(FedError::config(
                    field,
                    format!("has {len} entries, embed_dim has {stages} stages"),
                ));
            }
        }
        let positive_lists = [
            ("embed_dim", &self.embed_dim),
            ("patch_size", &self.patch_size),
            ("patch_stride", &self.patch_stride),
            ("num_heads", &self.num_heads),
            ("num_groups", &self.num_groups),
        ];
        for (field, values) in positive_lists {
            if let Some(stage) = values.iter().position(|&v| v == 0) {
                return Err(FedError::config(field, format!("is 0 at stage {stage}")));
            }
        }
        let positive = [
            ("in_channels", self.in_channels),
            ("window_size", self.window_size),
            ("projection_dim", self.projection_dim),
            ("max_position_embeddings", self.max_position_embeddings),
            ("max_temporal_embeddings", self.max_temporal_embeddings),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(FedError::config(field, "must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return Err(FedError::config(
                "drop_path_rate",
                format!("must be in [0, 1), got {}", self.drop_path_rate),
            ));
        }
        for stage in 0..stages {
            let dim = self.embed_dim[stage];
            for (field, parts) in [
                ("num_heads", self.num_heads[stage]),
                ("num_groups", self.num_groups[stage]),
            ] {
                if !dim.is_multiple_of(parts) {
                    return Err(FedError::config(
                        field,
                        format!("{parts} at stage {stage} does not divide embed_dim {dim}"),
                    ));
                }
            }
        }
        if !(self.mlp_ratio.is_finite() && self.mlp_ratio > 0.0) {
            return Err(FedError::config("mlp_ratio", "must be finite and positive"));
        }
        if let Some(stage) = (0..stages).find(|&s| self.mlp_hidden(s) == 0) {
            return Err(FedError::config(
                "mlp_ratio",
                format!("gives an empty MLP at stage {stage}"),
            ));
        }
        if !self.out_dim().is_multiple_of(2) {
            return Err(FedError::config(
                "embed_dim",
                "last stage must be even (the cosine temporal table interleaves sin and cos)",
            ));
        }
        if self.activation_function != "gelu" {
            return Err(FedError::config(
                "activation_function",
                format!(
                    "`{}` is not supported (only `gelu`)",
                    self.activation_function
                ),
            ));
        }
        Ok(())
    }

    /// Spatial size after stage `stage`'s patch-embedding convolution, or `None` when the input
    /// (`size`, with padding) is smaller than the kernel.
    pub fn stage_output_size(&self, stage: usize, size: usize) -> Option<usize> {
        let padded = size + 2 * self.patch_padding[stage];
        let kernel = self.patch_size[stage];
        (padded >= kernel).then(|| (padded - kernel) / self.patch_stride[stage] + 1)
    }
}

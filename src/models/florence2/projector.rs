//! The projector from the vision tower into the language model (transformers'
//! `Florence2MultiModalProjector`).
//!
//! Module paths are transformers' native `state_dict` keys below `model.multi_modal_projector.`:
//! `image_projection.weight`, `image_proj_norm.{weight,bias}` (burn's `gamma`/`beta`),
//! `image_position_embed.{row,column}_embeddings.weight`. The cosine table
//! `visual_temporal_embed.pos_idx_to_embed`, a buffer that both layouts save, is computed here
//! (it is a fixed function of its shape) and its checkpoint key is skipped on purpose
//! ([`UNUSED_KEYS`]); keeping it out of the parameters keeps the parameter counts Microsoft's.

use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, Linear, LinearConfig};
use burn::prelude::*;

use super::davit::DavitConfig;
use super::davit::layers::layer_norm;
use crate::error::{FedError, Result};

/// Regex rules that turn the projector keys of Microsoft's original checkpoints into
/// transformers' native keys without the `model.` prefix,
/// `multi_modal_projector.<burn path in MultiModalProjector>` (`image_pos_embed` becomes
/// `image_position_embed`). Disjoint, like [`super::davit::ORIGINAL_KEY_RULES`]: chained or
/// first-match-wins application agree.
///
/// **`image_projection` is not a `Linear` in the original layout**: it is a raw
/// `nn.Parameter` of shape `(in, out)` used as `x @ image_projection`, while the native layout
/// has an `nn.Linear` whose weight is `(out, in)`. Both land on the burn path
/// `image_projection.weight`, a burn `Linear` weight, stored `[in, out]`. burn-store's
/// `PyTorchToBurnAdapter` transposes every `Linear` weight, which is right for the native key and
/// wrong for the original one; so a checkpoint in the original layout must be loaded with
/// [`super::davit::weights::OriginalLayoutAdapter`], which leaves that one tensor as it is.
pub const ORIGINAL_KEY_RULES: &[(&str, &str)] = &[
    (
        r"^image_projection$",
        "multi_modal_projector.image_projection.weight",
    ),
    (
        r"^image_proj_norm\.",
        "multi_modal_projector.image_proj_norm.",
    ),
    (
        r"^image_pos_embed\.",
        "multi_modal_projector.image_position_embed.",
    ),
    (
        r"^visual_temporal_embed\.",
        "multi_modal_projector.visual_temporal_embed.",
    ),
];

/// Keys (native, without the `model.` prefix; the original layout's after
/// [`ORIGINAL_KEY_RULES`]) that the projector does not load on purpose: the cosine temporal
/// table, which [`TemporalEmbedding`] computes.
pub const UNUSED_KEYS: &[&str] = &["multi_modal_projector.visual_temporal_embed.pos_idx_to_embed"];

/// Learned 2-D position (transformers' `Florence2VisionLearnedAbsolutePositionEmbedding2D`):
/// token `(y, x)` gets `concat(column_embeddings[x], row_embeddings[y])`, column first.
#[derive(Module, Debug)]
pub struct PositionEmbedding2d<B: Backend> {
    /// `[max_position_embeddings, D / 2]`.
    pub row_embeddings: Embedding<B>,
    /// `[max_position_embeddings, D - D / 2]`.
    pub column_embeddings: Embedding<B>,
}

impl<B: Backend> PositionEmbedding2d<B> {
    /// `[h * w, D]`, row-major over the `h x w` grid (`h`, `w` at most the table size).
    pub fn forward(&self, height: usize, width: usize) -> Tensor<B, 2> {
        let column = self.column_embeddings.weight.val().narrow(0, 0, width);
        let row = self.row_embeddings.weight.val().narrow(0, 0, height);
        let [_, column_dim] = column.dims();
        let [_, row_dim] = row.dims();
        let column = column
            .unsqueeze_dim::<3>(0)
            .expand([height, width, column_dim]);
        let row = row.unsqueeze_dim::<3>(1).expand([height, width, row_dim]);
        Tensor::cat(vec![column, row], 2).reshape([height * width, column_dim + row_dim])
    }
}

/// The cosine temporal embedding (transformers' `Florence2VisionPositionalEmbeddingCosine1D`):
/// a fixed `[max_temporal_embeddings, D]` table, sines in even columns and cosines in odd ones.
/// Florence-2 always has one frame, so only row 0 (`0, 1, 0, 1, ...`) is ever added.
#[derive(Module, Debug)]
pub struct TemporalEmbedding<B: Backend> {
    /// The table (a constant, not a parameter: it is neither loaded nor trained).
    pub pos_idx_to_embed: Tensor<B, 2>,
}

impl<B: Backend> TemporalEmbedding<B> {
    /// The table for `max_positions` frames of width `dim` (even).
    pub fn new(max_positions: usize, dim: usize, device: &B::Device) -> Self {
        let table = cosine_table(max_positions, dim);
        Self {
            pos_idx_to_embed: Tensor::from_data(
                TensorData::new(table, [max_positions, dim]),
                device,
            ),
        }
    }

    /// The rows of the first `frames` frames, `[frames, D]`.
    pub fn forward(&self, frames: usize) -> Tensor<B, 2> {
        self.pos_idx_to_embed.clone().narrow(0, 0, frames)
    }
}

/// transformers' `get_sinusoid_embeddings` laid out as its `pos_idx_to_embed`, row-major
/// `[max_positions, dim]`, computed in f32 as PyTorch does: with `half = dim / 2` and
/// `e = ln(10000) / half`, column `2i` of row `p` is `sin(p * exp(-i e))` and column `2i + 1` is
/// `cos(p * exp(-i e))` (`dim` must be even).
pub fn cosine_table(max_positions: usize, dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let step = (10000f64.ln() / half as f64) as f32;
    let frequencies: Vec<f32> = (0..half).map(|i| (i as f32 * -step).exp()).collect();
    let mut table = vec![0.0f32; max_positions * dim];
    for (position, row) in table.chunks_exact_mut(dim.max(1)).enumerate() {
        for (i, frequency) in frequencies.iter().enumerate() {
            let angle = position as f32 * frequency;
            row[2 * i] = angle.sin();
            row[2 * i + 1] = angle.cos();
        }
    }
    table
}

/// Florence-2's projector: tower tokens `[N, h*w, C]` to `[N, 1 + h*w, projection_dim]` image
/// features for the language model; build it with [`DavitConfig::init_projector`].
#[derive(Module, Debug)]
pub struct MultiModalProjector<B: Backend> {
    /// `C -> projection_dim`, no bias.
    pub image_projection: Linear<B>,
    /// LayerNorm over `projection_dim`.
    pub image_proj_norm: LayerNorm<B>,
    /// Learned 2-D position.
    pub image_position_embed: PositionEmbedding2d<B>,
    /// Cosine temporal embedding.
    pub visual_temporal_embed: TemporalEmbedding<B>,
}

impl DavitConfig {
    /// The projector for this tower, with burn's default random initialisation.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] if [`DavitConfig::validate`] fails.
    pub fn init_projector<B: Backend>(&self, device: &B::Device) -> Result<MultiModalProjector<B>> {
        self.validate()?;
        let dim = self.out_dim();
        let positions = self.max_position_embeddings;
        Ok(MultiModalProjector {
            image_projection: LinearConfig::new(dim, self.projection_dim)
                .with_bias(false)
                .init(device),
            image_proj_norm: layer_norm(self.projection_dim, device),
            image_position_embed: PositionEmbedding2d {
                row_embeddings: EmbeddingConfig::new(positions, dim / 2).init(device),
                column_embeddings: EmbeddingConfig::new(positions, dim - dim / 2).init(device),
            },
            visual_temporal_embed: TemporalEmbedding::new(
                self.max_temporal_embeddings,
                dim,
                device,
            ),
        })
    }
}

impl<B: Backend> MultiModalProjector<B> {
    /// Image features `[N, 1 + h*w, projection_dim]` from the tower's last-stage tokens
    /// `[N, h*w, C]` (row-major over the `h x w` grid), in transformers' order: add the 2-D
    /// position, add the temporal embedding of frame 0, prepend the mean over tokens
    /// (the "spatial average pool"; the "temporal average pool" over one frame is the tokens
    /// themselves), project, LayerNorm.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] (field `image_tokens`) if the tokens do not have the
    /// tower's width, their count is not `h * w`, or `h` or `w` is 0 or exceeds the position
    /// tables.
    pub fn forward(&self, tokens: Tensor<B, 3>, grid: (usize, usize)) -> Result<Tensor<B, 3>> {
        let (height, width) = grid;
        let [_, count, dim] = tokens.dims();
        let [positions, row_dim] = self.image_position_embed.row_embeddings.weight.dims();
        let [_, column_dim] = self.image_position_embed.column_embeddings.weight.dims();
        let bad = |reason: String| Err(FedError::config("image_tokens", reason));
        if dim != row_dim + column_dim {
            return bad(format!(
                "have width {dim}, the projector expects {}",
                row_dim + column_dim
            ));
        }
        if height == 0 || width == 0 || height > positions || width > positions {
            return bad(format!(
                "come from a {height}x{width} grid; the position tables allow 1 to {positions} a side"
            ));
        }
        if count != height * width {
            return bad(format!("number {count}, not {height}x{width}"));
        }

        let position = self
            .image_position_embed
            .forward(height, width)
            .unsqueeze_dim::<3>(0);
        // The sinusoid table is a buffer, not a parameter: it follows the tokens' float type.
        let temporal = self
            .visual_temporal_embed
            .forward(1)
            .cast(tokens.dtype())
            .unsqueeze_dim::<3>(0);
        let x = tokens + position + temporal;
        let spatial = x.clone().mean_dim(1);
        let x = Tensor::cat(vec![spatial, x], 1);
        Ok(self
            .image_proj_norm
            .forward(self.image_projection.forward(x)))
    }
}

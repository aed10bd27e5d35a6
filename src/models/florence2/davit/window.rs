//! Window attention (transformers' `Florence2VisionWindowAttention`) and the window partition
//! helpers it uses.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// Multi-head self-attention inside non-overlapping `window x window` windows; no relative
/// position bias, no shift.
///
/// The token grid is zero-padded on the right and bottom to a multiple of the window (only when
/// needed), exactly like transformers: the padding comes after the block's LayerNorm, so padded
/// tokens are zeros whose keys and values are the `qkv` bias, and they take part in the
/// attention of the windows that hold them (there is no mask). Outputs are cropped back.
#[derive(Module, Debug)]
pub struct WindowAttention<B: Backend> {
    /// `dim -> 3 * dim` (queries, keys, values; heads contiguous within each).
    pub qkv: Linear<B>,
    /// `dim -> dim`.
    pub proj: Linear<B>,
    /// Number of heads.
    pub num_heads: usize,
    /// Side of the windows, in tokens.
    pub window_size: usize,
}

impl<B: Backend> WindowAttention<B> {
    /// Attention over `dim` channels with `num_heads` heads (which must divide `dim`).
    pub fn new(
        dim: usize,
        num_heads: usize,
        window_size: usize,
        qkv_bias: bool,
        device: &B::Device,
    ) -> Self {
        Self {
            qkv: LinearConfig::new(dim, 3 * dim)
                .with_bias(qkv_bias)
                .init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            num_heads,
            window_size,
        }
    }

    /// `[N, H*W, C]` tokens of an `H x W` grid (row-major) -> `[N, H*W, C]`.
    ///
    /// All windows of all images and all heads go through one batched attention call.
    pub fn forward(&self, tokens: Tensor<B, 3>, height: usize, width: usize) -> Tensor<B, 3> {
        let [batch, _, dim] = tokens.dims();
        let window = self.window_size;
        let heads = self.num_heads;
        let head_dim = dim / heads;

        let grid = pad_to_multiple(tokens.reshape([batch, height, width, dim]), window);
        let [_, padded_h, padded_w, _] = grid.dims();
        let windows = window_partition(grid, window);
        let [num_windows, window_tokens, _] = windows.dims();

        // [nW, T, 3C] -> [3, nW, heads, T, head_dim]
        let qkv = self
            .qkv
            .forward(windows)
            .reshape([num_windows, window_tokens, 3, heads, head_dim])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([num_windows, heads, window_tokens, head_dim])
        };
        let options = AttentionModuleOptions {
            scale: Some((head_dim as f64).powf(-0.5)),
            ..Default::default()
        };
        let out = attention(part(0), part(1), part(2), None, None, options)
            .swap_dims(1, 2)
            .reshape([num_windows, window_tokens, dim]);
        let out = self.proj.forward(out);

        let grid = window_merge(out, batch, padded_h, padded_w, window);
        let grid = if padded_h != height || padded_w != width {
            grid.slice([0..batch, 0..height, 0..width, 0..dim])
        } else {
            grid
        };
        grid.reshape([batch, height * width, dim])
    }
}

/// Zero-pads `[N, H, W, C]` on the bottom and right so that `H` and `W` are multiples of
/// `window` (`F.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))`); returns `x` itself when they
/// already are.
pub fn pad_to_multiple<B: Backend>(x: Tensor<B, 4>, window: usize) -> Tensor<B, 4> {
    let [_, height, width, _] = x.dims();
    let pad_bottom = (window - height % window) % window;
    let pad_right = (window - width % window) % window;
    if pad_bottom == 0 && pad_right == 0 {
        return x;
    }
    // Zeros of x's own float type (burn's `pad` fills with the backend's default one).
    let [batch, _, _, channels] = x.dims();
    let device = x.device();
    let dtype = x.dtype();
    let zeros = |shape: [usize; 4]| Tensor::<B, 4>::zeros(shape, &device).cast(dtype);
    let x = if pad_bottom > 0 {
        Tensor::cat(vec![x, zeros([batch, pad_bottom, width, channels])], 1)
    } else {
        x
    };
    if pad_right > 0 {
        Tensor::cat(
            vec![x, zeros([batch, height + pad_bottom, pad_right, channels])],
            2,
        )
    } else {
        x
    }
}

/// `[N, H, W, C]` (H and W multiples of `window`) -> `[N * (H/w) * (W/w), w*w, C]`: windows in
/// row-major order per image, tokens row-major within each window.
pub fn window_partition<B: Backend>(x: Tensor<B, 4>, window: usize) -> Tensor<B, 3> {
    let [batch, height, width, dim] = x.dims();
    let (rows, cols) = (height / window, width / window);
    x.reshape([batch, rows, window, cols, window, dim])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([batch * rows * cols, window * window, dim])
}

/// The inverse of [`window_partition`]: `[N * (H/w) * (W/w), w*w, C] -> [N, H, W, C]`.
pub fn window_merge<B: Backend>(
    windows: Tensor<B, 3>,
    batch: usize,
    height: usize,
    width: usize,
    window: usize,
) -> Tensor<B, 4> {
    let dim = windows.dims()[2];
    let (rows, cols) = (height / window, width / window);
    windows
        .reshape([batch, rows, cols, window, window, dim])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([batch, height, width, dim])
}

//! Host kernels of the folded backbone, on channels-last (`NHWC`) `f32` slices.
//!
//! Each kernel handles a few images on one thread; [`super::FoldedMobileNetV3`] spreads
//! groups of images over rayon's threads. Bias and activation are applied while the output is
//! still in cache ("fused"), never as a separate pass over the whole batch.

/// The activation fused into a layer's epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// No activation (the projections).
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
}

impl Act {
    /// Applies the activation to one value, with the same operations as the unfused layers.
    #[inline(always)]
    pub(crate) fn apply(self, x: f32) -> f32 {
        match self {
            Self::Identity => x,
            Self::Relu => x.max(0.0),
            Self::Hardswish => x * hardsigmoid(x),
        }
    }
}

/// `relu6(x + 3) / 6`.
#[inline(always)]
pub(crate) fn hardsigmoid(x: f32) -> f32 {
    (x + 3.0).clamp(0.0, 6.0) / 6.0
}

/// `out = f(out + bias)` row by row, plus `residual` when given.
#[inline(always)]
fn epilogue_with(out: &mut [f32], bias: &[f32], residual: Option<&[f32]>, f: impl Fn(f32) -> f32) {
    let c = bias.len();
    match residual {
        None => {
            for row in out.chunks_exact_mut(c) {
                for (o, b) in row.iter_mut().zip(bias) {
                    *o = f(*o + b);
                }
            }
        }
        Some(res) => {
            for (row, res_row) in out.chunks_exact_mut(c).zip(res.chunks_exact(c)) {
                for ((o, b), r) in row.iter_mut().zip(bias).zip(res_row) {
                    *o = f(*o + b) + r;
                }
            }
        }
    }
}

multiversion!(epilogue_impl(out: &mut [f32], bias: &[f32], act: Act, residual: Option<&[f32]>) {
    let _ = FMA;
    match act {
        Act::Identity => epilogue_with(out, bias, residual, |x| x),
        Act::Relu => epilogue_with(out, bias, residual, |x| x.max(0.0)),
        Act::Hardswish => epilogue_with(out, bias, residual, |x| x * hardsigmoid(x)),
    }
});

/// `out = act(out + bias)` row by row (`bias.len()` columns), plus `residual` when given,
/// added after the activation (the projections have none).
fn epilogue(out: &mut [f32], bias: &[f32], act: Act, residual: Option<&[f32]>) {
    if !bias.is_empty() {
        epilogue_impl(out, bias, act, residual);
    }
}

/// `dst[m, n] = lhs[m, k] @ rhs[k, n]`, all row-major, on the calling thread.
///
/// # Panics
/// If a slice is shorter than its dimensions say (a bug in the caller: every call site sizes
/// the slices from the same dimensions).
fn matmul(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
    assert!(
        dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n,
        "matmul: slices smaller than [{m}, {k}] x [{k}, {n}]"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assert above keeps every access of the row-major [m, k], [k, n] and [m, n]
    // operands (strides k, n and n, column stride 1) inside the three slices; `dst` is a
    // unique borrow, so it aliases neither operand. `read_dst = false` writes `dst` without
    // reading it (alpha is ignored).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A 1x1 convolution on `rows` pixels: `act(x[rows, c_in] @ weight[c_in, c_out] + bias)`, plus
/// `residual[rows, c_out]` when given.
pub(crate) fn pointwise(
    x: &[f32],
    rows: usize,
    weight: &[f32],
    bias: &[f32],
    act: Act,
    residual: Option<&[f32]>,
) -> Vec<f32> {
    let c_out = bias.len();
    let c_in = weight.len() / c_out.max(1);
    let mut out = vec![0f32; rows * c_out];
    matmul(&mut out, x, weight, rows, c_in, c_out);
    epilogue(&mut out, bias, act, residual);
    out
}

/// Geometry of a `k x k` convolution on `[n, h, w, c_in]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    /// Kernel side.
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Dilation (both axes).
    pub dilation: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Window {
    /// Output side for an input side, `None` when the window does not fit.
    pub(crate) fn out_size(&self, input: usize) -> Option<usize> {
        let span = self.dilation * (self.kernel - 1) + 1;
        let padded = input + 2 * self.padding;
        (padded >= span && self.stride > 0).then(|| (padded - span) / self.stride + 1)
    }

    /// Input index of output `o` and tap `t`, `None` in the padding.
    #[inline(always)]
    pub(crate) fn source(&self, o: usize, t: usize, input: usize) -> Option<usize> {
        let i = (o * self.stride + t * self.dilation).checked_sub(self.padding)?;
        (i < input).then_some(i)
    }
}

/// Shape of a channels-last activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nhwc {
    /// Images.
    pub n: usize,
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Nhwc {
    /// Number of pixels `n * h * w`.
    pub(crate) fn pixels(&self) -> usize {
        self.n * self.h * self.w
    }
}

/// Per-image channel means of `[n, h, w, c]`: `[n, c]`.
pub(crate) fn mean_hw(x: &[f32], shape: Nhwc) -> Vec<f32> {
    let (c, plane) = (shape.c, shape.h * shape.w);
    let mut out = vec![0f32; shape.n * c];
    for (image, mean) in x.chunks_exact(plane * c).zip(out.chunks_exact_mut(c)) {
        for px in image.chunks_exact(c) {
            for (m, v) in mean.iter_mut().zip(px) {
                *m += v;
            }
        }
        for m in mean.iter_mut() {
            *m /= plane as f32;
        }
    }
    out
}

/// Squeeze-and-excitation in place: `x *= hardsigmoid(fc2(relu(fc1(mean_hw(x)))))`, with
/// `fc1: [c, s]` and `fc2: [s, c]` (row-major, input-major).
pub(crate) fn squeeze_excite(
    x: &mut [f32],
    shape: Nhwc,
    fc1: (&[f32], &[f32]),
    fc2: (&[f32], &[f32]),
) {
    let (c, plane) = (shape.c, shape.h * shape.w);
    let s = fc1.1.len();
    let pooled = mean_hw(x, shape);
    let mut squeezed = vec![0f32; shape.n * s];
    matmul(&mut squeezed, &pooled, fc1.0, shape.n, c, s);
    epilogue(&mut squeezed, fc1.1, Act::Relu, None);
    let mut gate = vec![0f32; shape.n * c];
    matmul(&mut gate, &squeezed, fc2.0, shape.n, s, c);
    for row in gate.chunks_exact_mut(c) {
        for (g, b) in row.iter_mut().zip(fc2.1) {
            *g = hardsigmoid(*g + b);
        }
    }
    for (image, g) in x.chunks_exact_mut(plane * c).zip(gate.chunks_exact(c)) {
        for px in image.chunks_exact_mut(c) {
            for (v, g) in px.iter_mut().zip(g) {
                *v *= g;
            }
        }
    }
}

/// `[n, c, h, w]` to `[n, h, w, c]`.
pub(crate) fn nchw_to_nhwc(x: &[f32], shape: Nhwc) -> Vec<f32> {
    let (c, plane) = (shape.c, shape.h * shape.w);
    let mut out = vec![0f32; x.len()];
    for (src, dst) in x
        .chunks_exact(c * plane)
        .zip(out.chunks_exact_mut(c * plane))
    {
        for ch in 0..c {
            for p in 0..plane {
                dst[p * c + ch] = src[ch * plane + p];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive_product() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![f32::NAN; m * n];
        matmul(&mut c, &a, &b, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let expected: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - expected).abs() < 1e-5, "({i}, {j})");
            }
        }
    }

    #[test]
    fn window_output_sizes_follow_pytorch() {
        let w = |kernel, stride, dilation, padding| Window {
            kernel,
            stride,
            dilation,
            padding,
        };
        assert_eq!(w(3, 2, 1, 1).out_size(64), Some(32));
        assert_eq!(w(5, 2, 1, 2).out_size(4), Some(2));
        assert_eq!(w(5, 1, 2, 4).out_size(2), Some(2));
        assert_eq!(w(5, 1, 1, 0).out_size(4), None);
    }

    #[test]
    fn layout_change_moves_channels_last() {
        let shape = Nhwc {
            n: 1,
            h: 1,
            w: 2,
            c: 3,
        };
        // NCHW [1, 3, 1, 2]: channel-major.
        let x = [0.0, 1.0, 10.0, 11.0, 20.0, 21.0];
        assert_eq!(
            nchw_to_nhwc(&x, shape),
            vec![0.0, 10.0, 20.0, 1.0, 11.0, 21.0]
        );
    }
}

//! The spatial convolutions of the folded backbone (depthwise, and the dense stem), channels
//! last, register-blocked over the channels and compiled for the CPU's vector width.
//!
//! Each output pixel's channels are split into blocks of [`BLOCK`] (then [`LANES`]) values held
//! in registers while every tap of the window is accumulated, so a tap costs two loads and a
//! fused multiply-add per value instead of also loading and storing the accumulator. Bias and
//! activation are applied before the block is stored.
//!
//! The kernels are compiled for several vector extensions ([`super::simd`]).

use super::kernels::{Act, Nhwc, Window};
use super::simd::madd;

/// Channels per register block (two AVX-512 or four AVX2 registers).
const BLOCK: usize = 32;
/// Channels per narrow block, for the rest of the channels.
const LANES: usize = 8;

/// Valid `(tap, input index)` pairs of every output index along one axis.
fn taps_per_output(window: &Window, input: usize, output: usize) -> Vec<Vec<(usize, usize)>> {
    (0..output)
        .map(|o| {
            (0..window.kernel)
                .filter_map(|t| window.source(o, t, input).map(|i| (t, i)))
                .collect()
        })
        .collect()
}

/// One depthwise block of `W` channels at `base`: bias, every valid tap, activation, stored.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn depthwise_block<const W: usize, const FMA: bool>(
    out: &mut [f32],
    image: &[f32],
    weight: &[f32],
    bias: &[f32],
    taps: (&[(usize, usize)], &[(usize, usize)]),
    (k, w, c): (usize, usize, usize),
    base: usize,
    act: Act,
) {
    let mut acc = [0f32; W];
    acc.copy_from_slice(&bias[base..base + W]);
    for &(kh, ih) in taps.0 {
        for &(kw, iw) in taps.1 {
            let src = &image[(ih * w + iw) * c + base..][..W];
            let tap = &weight[(kh * k + kw) * c + base..][..W];
            for j in 0..W {
                acc[j] = madd::<FMA>(acc[j], src[j], tap[j]);
            }
        }
    }
    let dst = &mut out[base..base + W];
    for j in 0..W {
        dst[j] = act.apply(acc[j]);
    }
}

/// A depthwise `k x k` convolution (`groups = channels`): `weight[kh, kw, c]`, `bias[c]`,
/// activation fused. Returns the output and its shape.
pub(crate) fn depthwise(
    x: &[f32],
    shape: Nhwc,
    weight: &[f32],
    bias: &[f32],
    window: Window,
    act: Act,
    out_hw: (usize, usize),
) -> (Vec<f32>, Nhwc) {
    let c = shape.c;
    let (oh_n, ow_n) = out_hw;
    let mut out = vec![0f32; shape.n * oh_n * ow_n * c];
    let rows = taps_per_output(&window, shape.h, oh_n);
    let cols = taps_per_output(&window, shape.w, ow_n);
    let plane = shape.h * shape.w * c;
    multiversion!(run(
        x: &[f32],
        out: &mut [f32],
        weight: &[f32],
        bias: &[f32],
        rows: &[Vec<(usize, usize)>],
        cols: &[Vec<(usize, usize)>],
        dims: (usize, usize, usize, usize),
        act: Act
    ) {
        let (k, w, c, plane) = dims;
        let per_image = rows.len() * cols.len() * c;
        for (image, out) in x.chunks_exact(plane).zip(out.chunks_exact_mut(per_image)) {
            for (oh, row_taps) in rows.iter().enumerate() {
                for (ow, col_taps) in cols.iter().enumerate() {
                    let px = &mut out[(oh * cols.len() + ow) * c..][..c];
                    let taps = (&row_taps[..], &col_taps[..]);
                    let mut base = 0;
                    while base + BLOCK <= c {
                        depthwise_block::<BLOCK, FMA>(
                            px, image, weight, bias, taps, (k, w, c), base, act,
                        );
                        base += BLOCK;
                    }
                    while base + LANES <= c {
                        depthwise_block::<LANES, FMA>(
                            px, image, weight, bias, taps, (k, w, c), base, act,
                        );
                        base += LANES;
                    }
                    while base < c {
                        depthwise_block::<1, FMA>(
                            px, image, weight, bias, taps, (k, w, c), base, act,
                        );
                        base += 1;
                    }
                }
            }
        }
    });
    if plane > 0 {
        run(
            x,
            &mut out,
            weight,
            bias,
            &rows,
            &cols,
            (window.kernel, shape.w, c, plane),
            act,
        );
    }
    let out_shape = Nhwc {
        n: shape.n,
        h: oh_n,
        w: ow_n,
        c,
    };
    (out, out_shape)
}

/// One dense block of `W` output channels at `base`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dense_block<const W: usize, const FMA: bool>(
    out: &mut [f32],
    image: &[f32],
    weight: &[f32],
    bias: &[f32],
    taps: (&[(usize, usize)], &[(usize, usize)]),
    (k, w, c_in, c_out): (usize, usize, usize, usize),
    base: usize,
    act: Act,
) {
    let mut acc = [0f32; W];
    acc.copy_from_slice(&bias[base..base + W]);
    for &(kh, ih) in taps.0 {
        for &(kw, iw) in taps.1 {
            let src = &image[(ih * w + iw) * c_in..][..c_in];
            let taps = &weight[(kh * k + kw) * c_in * c_out..][..c_in * c_out];
            for (&s, row) in src.iter().zip(taps.chunks_exact(c_out)) {
                let row = &row[base..base + W];
                for j in 0..W {
                    acc[j] = madd::<FMA>(acc[j], s, row[j]);
                }
            }
        }
    }
    let dst = &mut out[base..base + W];
    for j in 0..W {
        dst[j] = act.apply(acc[j]);
    }
}

/// A dense `k x k` convolution (`groups = 1`, the stem): `weight[kh, kw, c_in, c_out]`,
/// `bias[c_out]`, activation fused.
pub(crate) fn dense(
    x: &[f32],
    shape: Nhwc,
    weight: &[f32],
    bias: &[f32],
    window: Window,
    act: Act,
    out_hw: (usize, usize),
) -> (Vec<f32>, Nhwc) {
    let (c_in, c_out) = (shape.c, bias.len());
    let (oh_n, ow_n) = out_hw;
    let mut out = vec![0f32; shape.n * oh_n * ow_n * c_out];
    let rows = taps_per_output(&window, shape.h, oh_n);
    let cols = taps_per_output(&window, shape.w, ow_n);
    let plane = shape.h * shape.w * c_in;
    multiversion!(run(
        x: &[f32],
        out: &mut [f32],
        weight: &[f32],
        bias: &[f32],
        rows: &[Vec<(usize, usize)>],
        cols: &[Vec<(usize, usize)>],
        dims: (usize, usize, usize, usize, usize),
        act: Act
    ) {
        let (k, w, c_in, c_out, plane) = dims;
        let per_image = rows.len() * cols.len() * c_out;
        for (image, out) in x.chunks_exact(plane).zip(out.chunks_exact_mut(per_image)) {
            for (oh, row_taps) in rows.iter().enumerate() {
                for (ow, col_taps) in cols.iter().enumerate() {
                    let px = &mut out[(oh * cols.len() + ow) * c_out..][..c_out];
                    let taps = (&row_taps[..], &col_taps[..]);
                    let dims = (k, w, c_in, c_out);
                    let mut base = 0;
                    while base + BLOCK <= c_out {
                        dense_block::<BLOCK, FMA>(px, image, weight, bias, taps, dims, base, act);
                        base += BLOCK;
                    }
                    while base + LANES <= c_out {
                        dense_block::<LANES, FMA>(px, image, weight, bias, taps, dims, base, act);
                        base += LANES;
                    }
                    while base < c_out {
                        dense_block::<1, FMA>(px, image, weight, bias, taps, dims, base, act);
                        base += 1;
                    }
                }
            }
        }
    });
    if plane > 0 {
        run(
            x,
            &mut out,
            weight,
            bias,
            &rows,
            &cols,
            (window.kernel, shape.w, c_in, c_out, plane),
            act,
        );
    }
    let out_shape = Nhwc {
        n: shape.n,
        h: oh_n,
        w: ow_n,
        c: c_out,
    };
    (out, out_shape)
}

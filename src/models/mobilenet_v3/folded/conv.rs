//! The spatial convolutions of the folded backbone (depthwise, and the dense stem), channels
//! last.
//!
//! Depthwise: each output pixel's channels are split into blocks of [`BLOCK`] (then [`MID`], [`LANES`]) values held
//! in registers while every tap of the window is accumulated, so a tap costs two loads and a
//! fused multiply-add per value instead of also loading and storing the accumulator. Bias and
//! activation are applied before the block is stored.
//!
//! The kernels are compiled for several vector extensions ([`super::simd`]).

use super::kernels::{Act, Nhwc, Window, pointwise};
use super::simd::madd;

/// Channels per register block of the depthwise kernel (four AVX-512 or eight AVX2
/// registers: enough independent accumulators to hide the multiply-add latency).
const BLOCK: usize = 64;
/// Channels per middle block, for the rest of the channels.
const MID: usize = 16;
/// Channels per narrow block, for the rest of the channels.
const LANES: usize = 8;

/// The valid `(tap, input index)` pairs of one output pixel: rows, then columns.
type Taps<'a> = (&'a [(usize, usize)], &'a [(usize, usize)]);

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
    taps: Taps<'_>,
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
                    while base + MID <= c {
                        depthwise_block::<MID, FMA>(
                            px, image, weight, bias, taps, (k, w, c), base, act,
                        );
                        base += MID;
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

/// A dense `k x k` convolution (`groups = 1`, the stem): `weight[kh, kw, c_in, c_out]`,
/// `bias[c_out]`, activation fused. The windows are gathered into a patch matrix
/// `[pixels, kh * kw * c_in]` (zeros in the padding), then one matrix product with the weight
/// read as `[kh * kw * c_in, c_out]`: with three input channels a direct loop would chain
/// every multiply-add of an output on one accumulator.
pub(crate) fn dense(
    x: &[f32],
    shape: Nhwc,
    weight: &[f32],
    bias: &[f32],
    window: Window,
    act: Act,
    out_hw: (usize, usize),
) -> (Vec<f32>, Nhwc) {
    let c_in = shape.c;
    let (oh_n, ow_n) = out_hw;
    let k = window.kernel;
    let width = k * k * c_in;
    let pixels = shape.n * oh_n * ow_n;
    let mut patches = vec![0f32; pixels * width];
    let rows = taps_per_output(&window, shape.h, oh_n);
    let cols = taps_per_output(&window, shape.w, ow_n);
    let plane = shape.h * shape.w * c_in;
    if plane > 0 && width > 0 {
        let geometry = Patches {
            rows: &rows,
            cols: &cols,
            k,
            w: shape.w,
            c_in,
            plane,
        };
        // A copy of three values is a library call unless its length is known.
        match c_in {
            3 => gather::<3>(x, &mut patches, &geometry),
            _ => gather::<0>(x, &mut patches, &geometry),
        }
    }
    let out = pointwise(&patches, pixels, weight, bias, act, None);
    let out_shape = Nhwc {
        n: shape.n,
        h: oh_n,
        w: ow_n,
        c: bias.len(),
    };
    (out, out_shape)
}

/// Where [`gather`] reads the windows.
struct Patches<'a> {
    rows: &'a [Vec<(usize, usize)>],
    cols: &'a [Vec<(usize, usize)>],
    k: usize,
    w: usize,
    c_in: usize,
    /// Values per input image, `h * w * c_in` (not 0).
    plane: usize,
}

/// Writes each output pixel's window of `x` (`[n, h, w, c_in]`) into a row of `patches`
/// (`[n * oh * ow, k * k * c_in]`, zero-initialised); `C` is `c_in` when known at compile time,
/// else 0.
fn gather<const C: usize>(x: &[f32], patches: &mut [f32], g: &Patches<'_>) {
    let c_in = if C > 0 { C } else { g.c_in };
    let width = g.k * g.k * c_in;
    let per_image = g.rows.len() * g.cols.len() * width;
    for (image, dst) in x
        .chunks_exact(g.plane)
        .zip(patches.chunks_exact_mut(per_image))
    {
        let pairs = g
            .rows
            .iter()
            .flat_map(|r| g.cols.iter().map(move |c| (r, c)));
        for (patch, (row_taps, col_taps)) in dst.chunks_exact_mut(width).zip(pairs) {
            for &(kh, ih) in row_taps {
                for &(kw, iw) in col_taps {
                    let src = &image[(ih * g.w + iw) * c_in..][..c_in];
                    let dst = &mut patch[(kh * g.k + kw) * c_in..][..c_in];
                    if C > 0 {
                        dst[..C].copy_from_slice(&src[..C]);
                    } else {
                        dst.copy_from_slice(src);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::models::mobilenet_v3::folded::simd::BASELINE_ONLY;

    fn values(n: usize, salt: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + salt) * 0.618).sin()).collect()
    }

    /// Direct convolution: `weight[kh, kw, c_in, c_out]` (`depthwise`: `[kh, kw, c]`).
    fn naive(
        x: &[f32],
        s: Nhwc,
        weight: &[f32],
        bias: &[f32],
        win: Window,
        depthwise: bool,
    ) -> Vec<f32> {
        let (oh_n, ow_n) = (win.out_size(s.h).unwrap(), win.out_size(s.w).unwrap());
        let c_out = bias.len();
        let k = win.kernel;
        let mut out = Vec::new();
        for n in 0..s.n {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    for o in 0..c_out {
                        let mut acc = f64::from(bias[o]);
                        for kh in 0..k {
                            for kw in 0..k {
                                let (Some(ih), Some(iw)) =
                                    (win.source(oh, kh, s.h), win.source(ow, kw, s.w))
                                else {
                                    continue;
                                };
                                let px = ((n * s.h + ih) * s.w + iw) * s.c;
                                let t = kh * k + kw;
                                if depthwise {
                                    acc += f64::from(x[px + o]) * f64::from(weight[t * c_out + o]);
                                } else {
                                    for i in 0..s.c {
                                        acc += f64::from(x[px + i])
                                            * f64::from(weight[(t * s.c + i) * c_out + o]);
                                    }
                                }
                            }
                        }
                        out.push(Act::Hardswish.apply(acc as f32));
                    }
                }
            }
        }
        out
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn convolutions_match_the_direct_loop_with_and_without_vectors() {
        // 75 channels: every block width (64, 8, 1); odd sizes, padding, dilation.
        let windows = [
            Window {
                kernel: 3,
                stride: 2,
                dilation: 1,
                padding: 1,
            },
            Window {
                kernel: 5,
                stride: 1,
                dilation: 2,
                padding: 4,
            },
            Window {
                kernel: 5,
                stride: 2,
                dilation: 1,
                padding: 2,
            },
        ];
        for win in windows {
            let s = Nhwc {
                n: 2,
                h: 7,
                w: 6,
                c: 75,
            };
            let out_hw = (win.out_size(s.h).unwrap(), win.out_size(s.w).unwrap());
            let x = values(s.n * s.h * s.w * s.c, 0.5);
            let k2 = win.kernel * win.kernel;
            let (wd, bd) = (values(k2 * s.c, 1.5), values(s.c, 2.5));
            let expected = naive(&x, s, &wd, &bd, win, true);
            for baseline in [false, true] {
                BASELINE_ONLY.store(baseline, Ordering::SeqCst);
                let (got, shape) = depthwise(&x, s, &wd, &bd, win, Act::Hardswish, out_hw);
                BASELINE_ONLY.store(false, Ordering::SeqCst);
                assert_eq!((shape.h, shape.w, shape.c), (out_hw.0, out_hw.1, s.c));
                let d = max_diff(&got, &expected);
                assert!(d < 1e-5, "depthwise {win:?} baseline {baseline}: {d}");
            }
            // Dense (the stem's layout), with 3 and with 5 input channels.
            for c_in in [3, 5] {
                let s = Nhwc { c: c_in, ..s };
                let x = values(s.n * s.h * s.w * c_in, 3.5);
                let (wd, bd) = (values(k2 * c_in * 11, 4.5), values(11, 5.5));
                let expected = naive(&x, s, &wd, &bd, win, false);
                let (got, _) = dense(&x, s, &wd, &bd, win, Act::Hardswish, out_hw);
                let d = max_diff(&got, &expected);
                assert!(d < 1e-5, "dense {win:?} c_in {c_in}: {d}");
            }
        }
        // The check sees a wrong kernel: one weight changed.
        let win = windows[0];
        let s = Nhwc {
            n: 1,
            h: 5,
            w: 5,
            c: 9,
        };
        let out_hw = (3, 3);
        let x = values(5 * 5 * 9, 0.5);
        let (mut wd, bd) = (values(9 * 9, 1.5), values(9, 2.5));
        let expected = naive(&x, s, &wd, &bd, win, true);
        wd[40] += 0.1;
        let (got, _) = depthwise(&x, s, &wd, &bd, win, Act::Hardswish, out_hw);
        assert!(max_diff(&got, &expected) > 1e-3);
    }
}

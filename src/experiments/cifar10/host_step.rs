//! One CIFAR-10 member's training step from the frozen-prefix cache, forward and backward in
//! plain Rust on host slices: the same computation as [`super::cohort_step`] (read its header
//! for the formulas) for one member, [`BLOCK`] rows at a time.
//!
//! A block's hidden activations (`hidden` floats a row) stay in cache from its forward pass to
//! its backward pass, and the member's tensors and gradients (a few tens of KiB) in L2; each
//! parameter row is loaded once for the block's rows. A step is a few passes over cached memory
//! instead of ~20 element-wise tensor ops over `[C, 32, hidden]` arrays. Every gradient element
//! adds the rows' terms in row order, so blocks give the bits of one row at a time (tested). The loops are written so the compiler vectorises them (fixed-width accumulators for
//! the dot products). [`step`] runs them compiled for AVX-512 or AVX2 where the CPU has one, and
//! for the target's baseline elsewhere; without fused multiply-adds, so every build gives the
//! same bits (tested).
//!
//! Layouts, row-major: `a` `[rank, in]` (as the adapter holds it), `bt` `[rank, hidden]` (the
//! adapter's `B` transposed), `wt` `[classes, hidden]` (the head's weight transposed), `bias`
//! `[classes]`. Gradients come in the same layouts.

use super::vector_builds::vector_builds;

/// Widths of one member's tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct HostShape {
    /// Pooled feature width (the adapter's input).
    pub input: usize,
    /// Hidden width (`classifier.0`'s output).
    pub hidden: usize,
    /// Adapter rank.
    pub rank: usize,
    /// Number of classes.
    pub classes: usize,
    /// The adapter's `alpha / r`.
    pub scaling: f32,
}

/// One member's trainable tensors (see the module header for the layouts).
#[derive(Debug, Clone, Copy)]
pub(super) struct HostParams<'a> {
    pub a: &'a [f32],
    pub bt: &'a [f32],
    pub wt: &'a [f32],
    pub bias: &'a [f32],
}

/// Gradients of a member's mean loss, in the layouts of [`HostParams`].
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HostGrads {
    pub a: Vec<f32>,
    pub bt: Vec<f32>,
    pub wt: Vec<f32>,
    pub bias: Vec<f32>,
}

impl HostGrads {
    /// Zero gradients for `shape`.
    pub fn zeros(shape: &HostShape) -> Self {
        Self {
            a: vec![0.0; shape.rank * shape.input],
            bt: vec![0.0; shape.rank * shape.hidden],
            wt: vec![0.0; shape.classes * shape.hidden],
            bias: vec![0.0; shape.classes],
        }
    }

    fn clear(&mut self) {
        for g in [&mut self.a, &mut self.bt, &mut self.wt, &mut self.bias] {
            g.fill(0.0);
        }
    }
}

/// One batch of a member: per row its cached features (`input` floats), frozen product
/// (`hidden` floats) and label, and the dropout masks of the whole batch (scale included,
/// `rows × input` and `rows × hidden`; `None`: no dropout).
#[derive(Debug, Clone, Copy)]
pub(super) struct HostBatch<'a> {
    pub x: &'a [&'a [f32]],
    pub base: &'a [&'a [f32]],
    pub labels: &'a [usize],
    pub mask_in: Option<&'a [f32]>,
    pub mask_hidden: Option<&'a [f32]>,
}

/// Rows a step computes together: each load of a parameter row serves this many rows.
pub(super) const BLOCK: usize = 4;

/// Work space for [`BLOCK`] rows, allocated once per member and round.
#[derive(Debug, Clone)]
pub(super) struct Scratch {
    xd: Vec<f32>,
    act: Vec<f32>,
    slope: Vec<f32>,
    g_up: Vec<f32>,
    down: Vec<f32>,
    g_down: Vec<f32>,
    logits: Vec<f32>,
    /// A hidden row of ones (the hidden mask without dropout).
    ones: Vec<f32>,
}

impl Scratch {
    /// Work space for `shape`.
    pub fn new(shape: &HostShape) -> Self {
        Self {
            xd: vec![0.0; BLOCK * shape.input],
            act: vec![0.0; BLOCK * shape.hidden],
            slope: vec![0.0; BLOCK * shape.hidden],
            g_up: vec![0.0; BLOCK * shape.hidden],
            down: vec![0.0; BLOCK * shape.rank],
            g_down: vec![0.0; BLOCK * shape.rank],
            logits: vec![0.0; BLOCK * shape.classes],
            ones: vec![1.0; shape.hidden],
        }
    }
}

vector_builds! {
    /// Forward and backward of one step: writes the gradients of the batch's mean
    /// cross-entropy into `grads` and returns that mean loss. Labels outside the classes
    /// contribute no target (as a zero one-hot row). Compiled for the CPU's vector extension
    /// (see [`super::vector_builds`]): every build gives the baseline build's bits (the dot
    /// products' 16 accumulators fix the summation order).
    pub(super) fn step(
        shape: &HostShape,
        params: HostParams<'_>,
        batch: HostBatch<'_>,
        grads: &mut HostGrads,
        scratch: &mut Scratch,
    ) -> f32 = step_rows::<BLOCK>;
}

/// The step, `R` rows at a time (`R` at most [`BLOCK`]): each parameter row is loaded once
/// for the block's rows. Every gradient element still adds the rows' terms in row order and
/// every row's values are computed as one row alone, so any `R` gives the same bits.
#[inline(always)]
fn step_rows<const R: usize>(
    shape: &HostShape,
    p: HostParams<'_>,
    batch: HostBatch<'_>,
    grads: &mut HostGrads,
    s: &mut Scratch,
) -> f32 {
    let HostShape {
        input: f,
        hidden: h,
        rank: r,
        classes: k,
        scaling,
    } = *shape;
    grads.clear();
    let n = batch.labels.len();
    if n == 0 {
        return 0.0;
    }
    let weight = 1.0 / n as f32;
    let mut loss = 0f32;
    for start in (0..n).step_by(R) {
        let rows = start..(start + R).min(n);
        let m = rows.len();
        // Forward: xd = x ⊙ m1, down = A xd, h = base + s B down.
        for (b, i) in rows.clone().enumerate() {
            let xd = &mut s.xd[b * f..(b + 1) * f];
            match batch.mask_in {
                Some(mask) => mul_into(xd, batch.x[i], &mask[i * f..(i + 1) * f]),
                None => xd.copy_from_slice(batch.x[i]),
            }
        }
        for j in 0..r {
            let a_j = &p.a[j * f..(j + 1) * f];
            for b in 0..m {
                s.down[b * r + j] = dot(&s.xd[b * f..(b + 1) * f], a_j);
            }
        }
        // `g_up` holds `up = B down` for now.
        s.g_up[..m * h].fill(0.0);
        for j in 0..r {
            let bt_j = &p.bt[j * h..(j + 1) * h];
            for b in 0..m {
                axpy(&mut s.g_up[b * h..(b + 1) * h], s.down[b * r + j], bt_j);
            }
        }
        for (b, i) in rows.clone().enumerate() {
            let m2 = match batch.mask_hidden {
                Some(mask) => &mask[i * h..(i + 1) * h],
                None => &s.ones[..],
            };
            let span = b * h..(b + 1) * h;
            activate(
                &mut s.act[span.clone()],
                &mut s.slope[span.clone()],
                &s.g_up[span],
                batch.base[i],
                m2,
                scaling,
            );
        }
        // Logits, log-softmax, loss and their gradient (`logits` becomes `g_logits`).
        for c in 0..k {
            let wt_c = &p.wt[c * h..(c + 1) * h];
            for b in 0..m {
                s.logits[b * k + c] = dot(&s.act[b * h..(b + 1) * h], wt_c) + p.bias[c];
            }
        }
        for (b, i) in rows.clone().enumerate() {
            let logits = &mut s.logits[b * k..(b + 1) * k];
            let label = batch.labels[i];
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f32 = logits.iter().map(|z| (z - max).exp()).sum();
            let log_sum = sum.ln();
            for (c, z) in logits.iter_mut().enumerate() {
                let log_p = *z - max - log_sum;
                let target = if c == label { 1.0 } else { 0.0 };
                loss -= log_p * target * weight;
                *z = (log_p.exp() - target) * weight;
            }
        }
        // Backward: the head, then through the activation to the adapter.
        s.g_up[..m * h].fill(0.0);
        for c in 0..k {
            let wt_c = &p.wt[c * h..(c + 1) * h];
            let g_wt_c = &mut grads.wt[c * h..(c + 1) * h];
            for b in 0..m {
                let g = s.logits[b * k + c];
                grads.bias[c] += g;
                axpy(g_wt_c, g, &s.act[b * h..(b + 1) * h]);
                axpy(&mut s.g_up[b * h..(b + 1) * h], g, wt_c);
            }
        }
        for (g, &slope) in s.g_up[..m * h].iter_mut().zip(&s.slope) {
            *g *= slope;
        }
        for j in 0..r {
            let bt_j = &p.bt[j * h..(j + 1) * h];
            for b in 0..m {
                s.g_down[b * r + j] = dot(&s.g_up[b * h..(b + 1) * h], bt_j);
            }
        }
        for j in 0..r {
            let g_bt_j = &mut grads.bt[j * h..(j + 1) * h];
            for b in 0..m {
                axpy(g_bt_j, s.down[b * r + j], &s.g_up[b * h..(b + 1) * h]);
            }
            let g_a_j = &mut grads.a[j * f..(j + 1) * f];
            for b in 0..m {
                axpy(g_a_j, s.g_down[b * r + j], &s.xd[b * f..(b + 1) * f]);
            }
        }
    }
    loss
}

/// `h = base + s up`, `act = hardswish(h) ⊙ m2`, and `slope` = `d act / d up` without the
/// head: `s m2 (gate + h / 6 on (-3, 3))`, `gate = clamp(h + 3, 0, 6) / 6`.
#[inline(always)]
fn activate(act: &mut [f32], slope: &mut [f32], up: &[f32], base: &[f32], m2: &[f32], s: f32) {
    for ((((a, sl), &u), &b), &m) in act
        .iter_mut()
        .zip(slope.iter_mut())
        .zip(up)
        .zip(base)
        .zip(m2)
    {
        let h = b + u * s;
        let gate = (h + 3.0).clamp(0.0, 6.0) / 6.0;
        *a = h * gate * m;
        let inside = if h > -3.0 && h < 3.0 { h } else { 0.0 };
        *sl = m * (gate + inside / 6.0) * s;
    }
}

/// `out = x ⊙ m`.
#[inline(always)]
fn mul_into(out: &mut [f32], x: &[f32], m: &[f32]) {
    for ((o, &a), &b) in out.iter_mut().zip(x).zip(m) {
        *o = a * b;
    }
}

/// `y += alpha x`.
#[inline(always)]
fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `hardswish(h) = h clamp(h + 3, 0, 6) / 6`.
#[inline(always)]
pub(super) fn hardswish(h: f32) -> f32 {
    h * ((h + 3.0).clamp(0.0, 6.0) / 6.0)
}

/// `Σ a_i b_i`, summed in 16 lanes (so that the compiler vectorises it).
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0f32; LANES];
    let (a_chunks, a_rest) = a.as_chunks::<LANES>();
    let (b_chunks, b_rest) = b.as_chunks::<LANES>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in a_rest.iter().zip(b_rest) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::prelude::*;
    use burn::tensor::TensorData;
    use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

    use super::super::cohort_step::{StepInputs, StepParams, step as tensor_step};
    use super::*;

    type T3 = Tensor<Flex, 3>;

    fn t3(values: &[f32], dims: [usize; 3]) -> T3 {
        Tensor::from_data(TensorData::new(values.to_vec(), dims), &Default::default())
    }

    fn host(t: T3) -> Vec<f32> {
        t.into_data().into_vec().unwrap()
    }

    fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..cols)
            .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
            .collect()
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-3);
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 2e-5 * scale, "{what}: {x} vs {y}");
        }
    }

    /// The host step gives the stacked tensor step's gradients and loss, with and without
    /// dropout, for widths that are not multiples of the vector width, and hidden units on both
    /// sides of Hardswish's knees.
    #[test]
    fn host_step_equals_the_tensor_step() {
        let shape = HostShape {
            input: 37,
            hidden: 70,
            rank: 3,
            classes: 5,
            scaling: 2.0,
        };
        let (f, h, r, k, n) = (37, 70, 3, 5, 6);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut uniform = |len: usize, scale: f32| -> Vec<f32> {
            (0..len)
                .map(|_| rng.random_range(-1.0..1.0f32) * scale)
                .collect()
        };
        let (a, b, w, bias) = (
            uniform(r * f, 0.5),
            uniform(h * r, 0.5),
            uniform(h * k, 0.5),
            uniform(k, 0.5),
        );
        let (x, base) = (uniform(n * f, 1.0), uniform(n * h, 5.0));
        // Labels: one outside the classes (no target).
        let labels = [0, 4, 2, 7, 1, 3];
        let keep = |len: usize, p: f32, seed: u64| -> Vec<f32> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..len)
                .map(|_| {
                    if rng.random::<f32>() < p {
                        0.0
                    } else {
                        1.0 / (1.0 - p)
                    }
                })
                .collect()
        };
        for dropout in [false, true] {
            let mask_in = dropout.then(|| keep(n * f, 0.1, 1));
            let mask_hidden = dropout.then(|| keep(n * h, 0.3, 2));
            let mut onehot = vec![0f32; n * k];
            for (i, &l) in labels.iter().enumerate() {
                if l < k {
                    onehot[i * k + l] = 1.0;
                }
            }
            let inputs = StepInputs {
                x: t3(&x, [1, n, f]),
                base: t3(&base, [1, n, h]),
                onehot: t3(&onehot, [1, n, k]),
                weights: t3(&vec![1.0 / n as f32; n], [1, n, 1]),
                mask_in: mask_in.as_ref().map(|m| t3(m, [1, n, f])),
                mask_hidden: mask_hidden.as_ref().map(|m| t3(m, [1, n, h])),
            };
            let params = StepParams {
                a: t3(&a, [1, r, f]),
                b: t3(&b, [1, h, r]),
                w: t3(&w, [1, h, k]),
                bias: t3(&bias, [1, 1, k]),
                scaling: 2.0,
            };
            let expected = tensor_step(&params, &inputs);

            let (bt, wt) = (transpose(&b, h, r), transpose(&w, h, k));
            let rows_x: Vec<&[f32]> = x.chunks(f).collect();
            let rows_base: Vec<&[f32]> = base.chunks(h).collect();
            let mut grads = HostGrads::zeros(&shape);
            let mut scratch = Scratch::new(&shape);
            let batch = HostBatch {
                x: &rows_x,
                base: &rows_base,
                labels: &labels,
                mask_in: mask_in.as_deref(),
                mask_hidden: mask_hidden.as_deref(),
            };
            let host_params = HostParams {
                a: &a,
                bt: &bt,
                wt: &wt,
                bias: &bias,
            };
            let loss = step(&shape, host_params, batch, &mut grads, &mut scratch);
            // A second step reuses the gradients' storage: they are cleared, not accumulated.
            let again = step(&shape, host_params, batch, &mut grads, &mut scratch);
            assert_eq!(loss, again);
            // The build for the CPU's vector extension, in blocks of `BLOCK` rows (6 rows: a
            // full block and a short one), gives the bits of the baseline build one row at a
            // time.
            let mut baseline = HostGrads::zeros(&shape);
            let mut baseline_scratch = Scratch::new(&shape);
            let baseline_loss = step_rows::<1>(
                &shape,
                host_params,
                batch,
                &mut baseline,
                &mut baseline_scratch,
            );
            assert_eq!(loss.to_bits(), baseline_loss.to_bits());
            let bits = |g: &HostGrads| {
                [&g.a, &g.bt, &g.wt, &g.bias]
                    .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(bits(&grads), bits(&baseline));
            let what = |name: &str| format!("{name} (dropout {dropout})");
            let want_loss = host(expected.losses.reshape([1, 1, 1]))[0];
            assert!((loss - want_loss).abs() <= 1e-5, "{loss} vs {want_loss}");
            assert_close(&grads.a, &host(expected.a), &what("A"));
            assert_close(&transpose(&grads.bt, r, h), &host(expected.b), &what("B"));
            assert_close(&transpose(&grads.wt, k, h), &host(expected.w), &what("W"));
            assert_close(&grads.bias, &host(expected.bias), &what("bias"));
            assert!(
                grads.a.iter().any(|g| g.abs() > 1e-4),
                "A's gradient is not zero"
            );
        }
    }
}

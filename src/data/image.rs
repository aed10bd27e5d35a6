//! Image preprocessing: `u8` CHW images to normalised `f32` tensors for burn, with the
//! training augmentations CIFAR-10 recipes use.
//!
//! The exact torchvision equivalent is documented on [`ImageTransform`].

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand::rngs::ChaCha8Rng;
use rayon::prelude::*;

use super::DataError;
use super::cifar10::{CIFAR10_SIDE, Cifar10Split};

/// ImageNet channel means (RGB), as torchvision's pretrained weights expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The random choices of one training augmentation: a crop offset and a flip.
///
/// `Default` is the identity (no shift, no flip), used when no rng is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augmentation {
    /// Rows the crop window is shifted down: output row `y` reads input row `y + dy`
    /// (zero outside the image). `dy = top - padding` for torchvision's `RandomCrop` top `top`.
    pub dy: isize,
    /// Columns the crop window is shifted right, as `dy`.
    pub dx: isize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

/// Preprocessing of a 3-channel `u8` CHW image to a normalised `f32` CHW image of
/// `size x size`.
///
/// [`ImageTransform::apply`] computes, for one image, what this torchvision pipeline
/// computes on a `uint8` CHW tensor `x` of size `h x w`:
///
/// ```text
/// x = RandomCrop((h, w), padding=p)(x)      # zero padding, only when training (an rng given)
/// x = RandomHorizontalFlip(0.5)(x)          # only when training
/// x = x.float() / 255                       # ToTensor's scaling
/// x = F.interpolate(x[None], size=(S, S), mode="bilinear", align_corners=False,
///                   antialias=False)[0]     # = transforms.Resize((S, S), antialias=False)
/// x = Normalize(mean, std)(x)               # (x - mean) / std per channel
/// ```
///
/// The resize is **bilinear without antialiasing, `align_corners=False`** (PyTorch's
/// `upsample_bilinear2d`): output pixel `d` samples the input at
/// `s = max((d + 0.5) * in / out - 0.5, 0)`, blending pixels `floor(s)` and `floor(s) + 1`
/// (clamped to the last pixel) with weights `1 - frac(s)` and `frac(s)`. For upscaling
/// (CIFAR-10's 32 px to 64, 96 or 224, the main use) antialiasing makes no difference, so
/// this also equals torchvision's default `Resize(S)` on tensors; for downscaling it does
/// not low-pass first. The resize runs on the `[0, 1]` floats (ToTensor before Resize), not
/// on `u8` values, so nothing is rounded back to integers. The random draws come from a
/// [`ChaCha8Rng`], not torch's generator: same distributions, different streams.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageTransform {
    /// Output height and width.
    pub size: usize,
    /// Per-channel mean subtracted after scaling to `[0, 1]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by after subtracting the mean.
    pub std: [f32; 3],
    /// Training only: pad by this many zero pixels on every side, then crop a window of the
    /// input's size at a uniformly random position (torchvision's
    /// `RandomCrop(size, padding=p)`; CIFAR recipes use 4).
    pub random_crop_padding: Option<usize>,
    /// Training only: mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
}

impl ImageTransform {
    /// Resize to `size x size` and ImageNet normalisation ([`IMAGENET_MEAN`],
    /// [`IMAGENET_STD`]), no augmentation: what ImageNet-pretrained torchvision models
    /// expect.
    #[must_use]
    pub fn imagenet(size: usize) -> Self {
        Self {
            size,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            random_crop_padding: None,
            horizontal_flip: false,
        }
    }

    /// The same transform with CIFAR-style training augmentation: random crop with
    /// `padding` zero pixels and random horizontal flips (both applied only when an rng is
    /// passed).
    #[must_use]
    pub fn with_augmentation(mut self, padding: usize) -> Self {
        self.random_crop_padding = Some(padding);
        self.horizontal_flip = true;
        self
    }

    /// Number of `f32` values one output image has: `3 * size * size`.
    #[must_use]
    pub fn output_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// Draws one augmentation: the crop's top then left offset (each uniform in
    /// `0..=2 * padding`, as torchvision draws `i` then `j`), then the flip (probability
    /// 1/2). Draws nothing for a disabled augmentation, so enabling one does not change the
    /// other's stream.
    pub fn sample_augmentation(&self, rng: &mut ChaCha8Rng) -> Augmentation {
        let mut aug = Augmentation::default();
        if let Some(p) = self.random_crop_padding.filter(|&p| p > 0) {
            let top = rng.random_range(0..=2 * p);
            let left = rng.random_range(0..=2 * p);
            aug.dy = top as isize - p as isize;
            aug.dx = left as isize - p as isize;
        }
        if self.horizontal_flip {
            aug.flip = rng.random_bool(0.5);
        }
        aug
    }

    /// Preprocesses one image (`3 * h * w` bytes, CHW, RGB) and **appends** the
    /// [`output_len`](Self::output_len) values (CHW) to `out`.
    ///
    /// With `rng` (training) the crop and flip are drawn from it; with `None` (evaluation)
    /// no augmentation is applied whatever the settings.
    pub fn apply(
        &self,
        image_chw_u8: &[u8],
        h: usize,
        w: usize,
        rng: Option<&mut ChaCha8Rng>,
        out: &mut Vec<f32>,
    ) -> Result<(), DataError> {
        let aug = rng.map(|r| self.sample_augmentation(r)).unwrap_or_default();
        let start = out.len();
        out.resize(start + self.output_len(), 0.0);
        let result = self.apply_augmented(image_chw_u8, h, w, aug, &mut out[start..]);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Preprocesses one image with a given augmentation into `out`, which must hold exactly
    /// [`output_len`](Self::output_len) values (overwritten).
    pub fn apply_augmented(
        &self,
        image_chw_u8: &[u8],
        h: usize,
        w: usize,
        aug: Augmentation,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        self.check(image_chw_u8.len(), h, w)?;
        if out.len() != self.output_len() {
            return Err(DataError::InvalidArgument {
                field: "out",
                reason: format!(
                    "holds {} values, the transform writes {}",
                    out.len(),
                    self.output_len()
                ),
            });
        }
        // 1. Crop (zero padding) and flip, scaled to [0, 1].
        let plane = h * w;
        let mut src = vec![0f32; 3 * plane];
        for c in 0..3 {
            let channel = &image_chw_u8[c * plane..(c + 1) * plane];
            for y in 0..h {
                let sy = y as isize + aug.dy;
                if sy < 0 || sy >= h as isize {
                    continue; // padding row: stays 0
                }
                let row = &channel[sy as usize * w..(sy as usize + 1) * w];
                for x in 0..w {
                    let xc = if aug.flip { w - 1 - x } else { x };
                    let sx = xc as isize + aug.dx;
                    if sx >= 0 && sx < w as isize {
                        src[c * plane + y * w + x] = f32::from(row[sx as usize]) / 255.0;
                    }
                }
            }
        }
        // 2. Bilinear resize (align_corners=False, no antialias), 3. normalise.
        let s = self.size;
        let ys = linear_taps(h, s);
        let xs = linear_taps(w, s);
        for c in 0..3 {
            let input = &src[c * plane..(c + 1) * plane];
            let (mean, std) = (self.mean[c], self.std[c]);
            let output = &mut out[c * s * s..(c + 1) * s * s];
            for (oy, ty) in ys.iter().enumerate() {
                let r0 = &input[ty.i0 * w..(ty.i0 + 1) * w];
                let r1 = &input[ty.i1 * w..(ty.i1 + 1) * w];
                for (ox, tx) in xs.iter().enumerate() {
                    // Same association as PyTorch's kernel:
                    // h0l * (w0l * x00 + w1l * x01) + h1l * (w0l * x10 + w1l * x11).
                    let v = ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1])
                        + ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
                    output[oy * s + ox] = (v - mean) / std;
                }
            }
        }
        Ok(())
    }

    /// Preprocesses `images` (each `3 * h * w` bytes, CHW) into a `[N, 3, size, size]`
    /// tensor. Augmentations are drawn from `rng` (when given) in image order before the
    /// images are processed in parallel, so the result depends only on the rng's state.
    pub fn to_tensor<B: Backend>(
        &self,
        images: &[&[u8]],
        h: usize,
        w: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, DataError> {
        if images.is_empty() {
            return Err(DataError::InvalidArgument {
                field: "images",
                reason: "a batch needs at least one image".into(),
            });
        }
        for image in images {
            self.check(image.len(), h, w)?;
        }
        let augs: Vec<Augmentation> = match rng {
            Some(rng) => images
                .iter()
                .map(|_| self.sample_augmentation(rng))
                .collect(),
            None => vec![Augmentation::default(); images.len()],
        };
        let n = self.output_len();
        let mut values = vec![0f32; images.len() * n];
        values
            .par_chunks_mut(n)
            .zip(images.par_iter().zip(augs.par_iter()))
            .try_for_each(|(out, (image, aug))| self.apply_augmented(image, h, w, *aug, out))?;
        let shape = [images.len(), 3, self.size, self.size];
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    fn check(&self, len: usize, h: usize, w: usize) -> Result<(), DataError> {
        if self.size == 0 {
            return Err(DataError::InvalidArgument {
                field: "size",
                reason: "must be at least 1".into(),
            });
        }
        if let Some(c) = self.std.iter().position(|&s| s == 0.0 || !s.is_finite()) {
            return Err(DataError::InvalidArgument {
                field: "std",
                reason: format!("channel {c} is {}", self.std[c]),
            });
        }
        // Checked: `h` and `w` may come from a file header; an overflow is a shape error.
        let expected = h.checked_mul(w).and_then(|n| n.checked_mul(3));
        if h == 0 || w == 0 || expected != Some(len) {
            return Err(DataError::ImageShape {
                expected: expected.unwrap_or(usize::MAX),
                actual: len,
                height: h,
                width: w,
            });
        }
        Ok(())
    }
}

/// Preprocesses the CIFAR-10 images at `indices` of `split` into a `[N, 3, S, S]` tensor
/// (32x32 inputs); see [`ImageTransform::to_tensor`]. An index past the end is
/// [`DataError::IndexOutOfRange`].
///
/// ```
/// use burn::backend::Flex;
/// use fedvlm::data::{Cifar10Split, ImageTransform, to_tensor_batch};
///
/// let split = Cifar10Split { images: vec![128; 2 * 3072], labels: vec![3, 7] };
/// let x = to_tensor_batch::<Flex>(&split, &[1, 0], &ImageTransform::imagenet(64), None,
///                                 &Default::default())?;
/// assert_eq!(x.dims(), [2, 3, 64, 64]);
/// # Ok::<(), fedvlm::data::DataError>(())
/// ```
pub fn to_tensor_batch<B: Backend>(
    split: &Cifar10Split,
    indices: &[usize],
    transform: &ImageTransform,
    rng: Option<&mut ChaCha8Rng>,
    device: &B::Device,
) -> Result<Tensor<B, 4>, DataError> {
    let images = indices
        .iter()
        .map(|&i| {
            split
                .get(i)
                .map(|(image, _)| image)
                .ok_or(DataError::IndexOutOfRange {
                    index: i,
                    len: split.len(),
                })
        })
        .collect::<Result<Vec<&[u8]>, DataError>>()?;
    transform.to_tensor(&images, CIFAR10_SIDE, CIFAR10_SIDE, rng, device)
}

/// One output coordinate's two input taps and weights.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// PyTorch's linear source indices and weights for `align_corners=False` (no antialias):
/// `s = max(scale * (d + 0.5) - 0.5, 0)` with `scale = in / out` (f32), `i0 = floor(s)`
/// (at most `in - 1`), `i1 = i0 + 1` unless `i0` is the last pixel, `l1 = s - i0`,
/// `l0 = 1 - l1`.
fn linear_taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| {
            let s = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(input - 1);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            let l1 = (s - i0 as f32).clamp(0.0, 1.0);
            Tap {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}

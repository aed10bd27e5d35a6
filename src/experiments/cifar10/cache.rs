//! The frozen-prefix cache.
//!
//! With adapters only in `classifier.0`, everything before that layer is frozen, and so is the
//! layer's own product `W0 x + b` with `x` fixed: only the low-rank path `(alpha/r) B A x` and
//! what follows it (Hardswish, dropout, the head) change during training. The cache computes
//! the pooled features `x` and `W0 x + b` once per image and training reads them instead of
//! running the backbone, which makes a round cost a few small matrix products.
//!
//! The backbone runs folded ([`MobileNetV3::fold_for_inference`]: batch norms folded into the
//! convolutions, channels-last host kernels), on the host whatever the backend; the images are
//! preprocessed on the host straight into its input. Only `classifier.0`'s product runs on the
//! backend.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::module::linear;
use indicatif::{ProgressBar, ProgressStyle};

use rayon::prelude::*;

use crate::data::{CIFAR10_SIDE, Cifar10, Cifar10Split, ImageTransform};
use crate::error::{FedError, Result};
use crate::federated::Split;
use crate::models::MobileNetV3;
use crate::models::mobilenet_v3::Dense;

/// Images per backbone batch of the cache build.
const CACHE_BATCH: usize = 256;

/// Pooled features and the adapted layer's frozen product of every training and test image,
/// row `i` for image `i` of its split.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixCache {
    /// Width of the pooled features (`x`, the adapted layer's input).
    pub feature_dim: usize,
    /// Width of the adapted layer's output (`W0 x + b`).
    pub hidden_dim: usize,
    train_x: Vec<f32>,
    train_base: Vec<f32>,
    test_x: Vec<f32>,
    test_base: Vec<f32>,
}

/// `W0 x + b` of `classifier.0`, without its adapter.
pub fn frozen_product<B: Backend>(dense: &Dense<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    match dense {
        Dense::Plain(layer) => layer.forward(x),
        Dense::Lora(layer) => linear(x, layer.weight.val(), layer.bias.as_ref().map(|b| b.val())),
    }
}

/// Which implementation of the frozen backbone [`PrefixCache::build_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheBackbone {
    /// [`CacheBackbone::Folded`] on a CPU backend (burn's `Flex` or `NdArray`, with or without
    /// autodiff), [`CacheBackbone::Backend`] on any other (an accelerator); see
    /// [`CacheBackbone::resolve`].
    #[default]
    Auto,
    /// [`MobileNetV3::fold_for_inference`]: batch norms folded, channels-last kernels on the
    /// host (rayon threads), whatever the backend. The fast path on the CPU.
    Folded,
    /// The model's own layers on its backend ([`MobileNetV3::features_pooled`]): the path on
    /// an accelerator, and the reference the folded path is tested against.
    Backend,
}

impl CacheBackbone {
    /// The concrete choice for backend `B` on `device`: `Auto` becomes `Folded` when burn names
    /// the backend `flex` or `ndarray` (the host backends), else `Backend`.
    pub fn resolve<B: Backend>(self, device: &B::Device) -> Self {
        match self {
            Self::Auto => {
                let name = B::name(device).to_lowercase();
                if name.contains("flex") || name.contains("ndarray") {
                    Self::Folded
                } else {
                    Self::Backend
                }
            }
            other => other,
        }
    }
}

impl PrefixCache {
    /// Runs the frozen prefix of `model` over the first `limits.0` training and `limits.1` test
    /// images (in batches of 256, with a progress bar when `progress`), the backbone folded on
    /// the CPU and the model's own layers on an accelerator ([`CacheBackbone::Auto`]).
    ///
    /// # Errors
    /// From folding the backbone, preprocessing the images or reading the results.
    pub fn build<B: Backend>(
        model: &MobileNetV3<B>,
        data: &Cifar10,
        limits: (usize, usize),
        transform: &ImageTransform,
        progress: bool,
        device: &B::Device,
    ) -> Result<Self> {
        Self::build_with(
            model,
            data,
            limits,
            transform,
            progress,
            device,
            CacheBackbone::Auto,
        )
    }

    /// [`PrefixCache::build`] with a choice of backbone implementation.
    ///
    /// # Errors
    /// As [`PrefixCache::build`].
    pub fn build_with<B: Backend>(
        model: &MobileNetV3<B>,
        data: &Cifar10,
        limits: (usize, usize),
        transform: &ImageTransform,
        progress: bool,
        device: &B::Device,
        backbone: CacheBackbone,
    ) -> Result<Self> {
        let (train, test) = (data.train(), data.test());
        let n_train = limits.0.min(train.len());
        let n_test = limits.1.min(test.len());
        let bar = if progress {
            let bar = ProgressBar::new((n_train + n_test) as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "caching frozen features {bar:30} {pos}/{len} images ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        let folded = match backbone.resolve::<B>(device) {
            CacheBackbone::Folded => Some(model.fold_for_inference()?),
            CacheBackbone::Backend | CacheBackbone::Auto => None,
        };
        let size = transform.size;
        let mut dims = (0, 0);
        let mut run = |split: &Cifar10Split, n: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            let (mut xs, mut bases) = (Vec::new(), Vec::new());
            let indices: Vec<usize> = (0..n.min(split.len())).collect();
            for chunk in indices.chunks(CACHE_BATCH) {
                let images = preprocess(split, chunk, transform)?;
                let (x, f) = match &folded {
                    Some(folded) => (
                        folded.features_pooled_host(&images, chunk.len(), size, size)?,
                        folded.feature_dim(),
                    ),
                    None => {
                        let images = Tensor::<B, 4>::from_data(
                            TensorData::new(images, [chunk.len(), 3, size, size]),
                            device,
                        );
                        let x = model.features_pooled(images);
                        let f = x.dims()[1];
                        (to_vec(x)?, f)
                    }
                };
                let x_tensor =
                    Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [chunk.len(), f]), device);
                let base = frozen_product(&model.classifier.0, x_tensor);
                dims = (f, base.dims()[1]);
                xs.extend(x);
                bases.extend(to_vec(base)?);
                bar.inc(chunk.len() as u64);
            }
            Ok((xs, bases))
        };
        let (train_x, train_base) = run(train, n_train)?;
        let (test_x, test_base) = run(test, n_test)?;
        bar.finish_and_clear();
        Ok(Self {
            feature_dim: dims.0,
            hidden_dim: dims.1,
            train_x,
            train_base,
            test_x,
            test_base,
        })
    }

    /// Number of cached images of a split.
    pub fn len(&self, split: Split) -> usize {
        let (x, _) = self.arrays(split);
        x.len() / self.feature_dim.max(1)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.train_x.is_empty() && self.test_x.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * (self.train_x.len() + self.train_base.len() + self.test_x.len() + self.test_base.len())
    }

    fn arrays(&self, split: Split) -> (&[f32], &[f32]) {
        match split {
            Split::Train => (&self.train_x, &self.train_base),
            Split::Test | Split::GlobalTest => (&self.test_x, &self.test_base),
        }
    }

    /// Every training image's features (`feature_dim` floats a row) and frozen product
    /// (`hidden_dim` floats a row), row-major on the host.
    pub(super) fn train_arrays(&self) -> (&[f32], &[f32]) {
        self.arrays(Split::Train)
    }

    /// A split's features and frozen products, as [`Self::train_arrays`].
    pub(super) fn split_arrays(&self, split: Split) -> (&[f32], &[f32]) {
        self.arrays(split)
    }

    /// Features `[N, feature_dim]` and frozen products `[N, hidden_dim]` of images `rows` of a
    /// split.
    pub fn rows<B: Backend>(
        &self,
        split: Split,
        rows: &[usize],
        device: &B::Device,
    ) -> Result<(Tensor<B, 2>, Tensor<B, 2>)> {
        let (xs, bases) = self.arrays(split);
        let (f, h) = (self.feature_dim, self.hidden_dim);
        let mut x = Vec::with_capacity(rows.len() * f);
        let mut base = Vec::with_capacity(rows.len() * h);
        for &r in rows {
            let (Some(xr), Some(br)) = (xs.get(r * f..(r + 1) * f), bases.get(r * h..(r + 1) * h))
            else {
                return Err(FedError::Task(format!("image {r} is not in the cache")));
            };
            x.extend_from_slice(xr);
            base.extend_from_slice(br);
        }
        Ok((
            Tensor::from_data(TensorData::new(x, [rows.len(), f]), device),
            Tensor::from_data(TensorData::new(base, [rows.len(), h]), device),
        ))
    }
}

/// The images at `indices` of `split`, preprocessed without augmentation, `[N, 3, S, S]`
/// row-major on the host.
fn preprocess(
    split: &Cifar10Split,
    indices: &[usize],
    transform: &ImageTransform,
) -> Result<Vec<f32>> {
    let n = transform.output_len();
    let mut values = vec![0f32; indices.len() * n];
    values
        .par_chunks_mut(n)
        .zip(indices.par_iter())
        .try_for_each(|(out, &i)| {
            let (image, _) = split.get(i).ok_or_else(|| {
                FedError::Task(format!("image {i} is not in a split of {}", split.len()))
            })?;
            transform
                .apply_augmented(image, CIFAR10_SIDE, CIFAR10_SIDE, Default::default(), out)
                .map_err(FedError::from)
        })?;
    Ok(values)
}

fn to_vec<B: Backend>(t: Tensor<B, 2>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| FedError::Task(format!("{e:?}")))
}

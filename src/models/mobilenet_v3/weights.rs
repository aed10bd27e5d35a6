//! Loading torchvision checkpoints (`.pth` state dicts, or the same keys in `.safetensors`).

use std::path::Path;

use burn::prelude::*;
use burn_store::{PathFilter, PyTorchToBurnAdapter};

use super::adapters::HEAD_PREFIX;
use super::config::MobileNetV3Config;
use super::model::MobileNetV3;
use crate::models::WeightsError;
use crate::models::checkpoint::{ApplyCheck, Checkpoint, Format};

/// The head's weight, whose first dimension (PyTorch layout `[out, in]`) is the checkpoint's
/// number of classes.
const HEAD_WEIGHT: &str = "classifier.3.weight";

/// BatchNorm's update counter: present in every torchvision checkpoint, meaningless for frozen
/// statistics, so skipped on purpose.
const BATCHES_TRACKED: &str = ".num_batches_tracked";

impl<B: Backend> MobileNetV3<B> {
    /// Loads a torchvision `state_dict` saved with `torch.save` (such as the published
    /// `mobilenet_v3_small-047dcff4.pth`) into a model of the given configuration.
    ///
    /// Every tensor the model has must be in the file with the right shape, and every tensor of
    /// the file must have a place in the model, with two deliberate exceptions:
    /// * BatchNorm's `num_batches_tracked` counters are ignored (the statistics are frozen);
    /// * when the file's head `classifier.3` has another number of classes than
    ///   `config.num_classes` (1000 for ImageNet weights), the file's head is skipped and the
    ///   model's head is freshly initialised from `config.seed` (`N(0, 0.01^2)` weights, zero
    ///   bias, as torchvision initialises it).
    ///
    /// Load before inserting adapters ([`MobileNetV3::with_adapters`]).
    ///
    /// # Errors
    /// [`WeightsError::Read`] if the file cannot be read, [`WeightsError::ShapeMismatch`],
    /// [`WeightsError::MissingKey`], [`WeightsError::UnexpectedKey`] and
    /// [`WeightsError::BadTensor`] naming the first offending key, and
    /// [`WeightsError::InvalidConfig`] for an invalid `config`.
    pub fn load_torchvision(
        path: impl AsRef<Path>,
        config: &MobileNetV3Config,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        load(path.as_ref(), Format::Pytorch, config, device)
    }

    /// Loads a `.safetensors` file holding a torchvision `state_dict` (same keys and PyTorch
    /// layouts as [`MobileNetV3::load_torchvision`]'s `.pth`, for example written with
    /// `safetensors.torch.save_file(model.state_dict(), path)`), with the same rules.
    ///
    /// # Errors
    /// As [`MobileNetV3::load_torchvision`].
    pub fn load_safetensors(
        path: impl AsRef<Path>,
        config: &MobileNetV3Config,
        device: &B::Device,
    ) -> Result<Self, WeightsError> {
        load(path.as_ref(), Format::Safetensors, config, device)
    }
}

fn outside_head(path: &str, _container: &str) -> bool {
    !path.starts_with(HEAD_PREFIX)
}

/// Loads `path`, read as `format`, with torchvision's layouts (`PyTorchToBurnAdapter`).
fn load<B: Backend>(
    path: &Path,
    format: Format,
    config: &MobileNetV3Config,
    device: &B::Device,
) -> Result<MobileNetV3<B>, WeightsError> {
    config
        .validate()
        .map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
    let checkpoint = Checkpoint::open_as(path, format)?;

    let file_classes = checkpoint
        .get(HEAD_WEIGHT)
        .and_then(|snapshot| snapshot.shape.to_vec().first().copied());
    let replace_head = file_classes.is_some_and(|classes| classes != config.num_classes);
    let filter = replace_head.then(|| PathFilter::new().with_predicate(outside_head));

    let mut model = MobileNetV3::<B>::new(config, device);
    let result = checkpoint.apply(&mut model, filter, Box::new(PyTorchToBurnAdapter));
    let skipped_head = |key: &str| replace_head && key.starts_with(HEAD_PREFIX);
    ApplyCheck::new(checkpoint.file())
        .ignore_missing(skipped_head)
        .ignore_unused(|key| key.ends_with(BATCHES_TRACKED) || skipped_head(key))
        .check(result)?;
    Ok(model)
}

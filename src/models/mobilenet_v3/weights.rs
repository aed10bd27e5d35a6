//! Loading torchvision checkpoints (`.pth` state dicts, or the same keys in `.safetensors`).

use std::path::Path;

use burn::prelude::*;
use burn_store::{
    ApplyError, ApplyResult, ModuleSnapshot, ModuleStore, PathFilter, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};

use super::adapters::HEAD_PREFIX;
use super::config::MobileNetV3Config;
use super::model::MobileNetV3;
use crate::models::WeightsError;

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
        let path = path.as_ref();
        let store = PytorchStore::from_file(path)
            // torchvision's `classifier.0` / `classifier.3` must keep their indices.
            .map_indices_contiguous(false)
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false);
        load(store, PytorchStore::filter, path, config, device)
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
        let path = path.as_ref();
        let store = SafetensorsStore::from_file(path)
            .with_from_adapter(PyTorchToBurnAdapter)
            .map_indices_contiguous(false)
            .skip_enum_variants(true)
            .allow_partial(true)
            .validate(false);
        load(store, SafetensorsStore::filter, path, config, device)
    }
}

fn outside_head(path: &str, _container: &str) -> bool {
    !path.starts_with(HEAD_PREFIX)
}

fn load<B: Backend, S: ModuleStore>(
    mut store: S,
    with_filter: fn(S, PathFilter) -> S,
    path: &Path,
    config: &MobileNetV3Config,
    device: &B::Device,
) -> Result<MobileNetV3<B>, WeightsError> {
    let file = path.display().to_string();
    config
        .validate()
        .map_err(|e| WeightsError::InvalidConfig(e.to_string()))?;
    let read_error = |reason: String| WeightsError::Read {
        path: file.clone(),
        reason,
    };

    let file_classes = store
        .get_snapshot(HEAD_WEIGHT)
        .map_err(|e| read_error(e.to_string()))?
        .and_then(|snapshot| snapshot.shape.to_vec().first().copied());
    let replace_head = file_classes.is_some_and(|classes| classes != config.num_classes);
    if replace_head {
        store = with_filter(store, PathFilter::new().with_predicate(outside_head));
    }

    let mut model = MobileNetV3::<B>::new(config, device);
    let result = model
        .load_from(&mut store)
        .map_err(|e| read_error(e.to_string()))?;
    check(result, &file, replace_head)?;
    Ok(model)
}

/// Turns burn-store's report into the first error, in this order: bad tensors (shape, data
/// type, data), missing keys, unexpected keys.
fn check(result: ApplyResult, file: &str, replace_head: bool) -> Result<(), WeightsError> {
    if let Some(error) = result.errors.into_iter().next() {
        let path = file.to_string();
        return Err(match error {
            ApplyError::ShapeMismatch {
                path: key,
                expected,
                found,
            } => WeightsError::ShapeMismatch {
                path,
                key,
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            ApplyError::DTypeMismatch {
                path: key,
                expected,
                found,
            } => WeightsError::BadTensor {
                path,
                key,
                reason: format!("data type {found:?}, the model expects {expected:?}"),
            },
            ApplyError::AdapterError { path: key, message }
            | ApplyError::LoadError { path: key, message } => WeightsError::BadTensor {
                path,
                key,
                reason: message,
            },
        });
    }

    let missing: Vec<String> = result
        .missing
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !(replace_head && key.starts_with(HEAD_PREFIX)))
        .collect();
    if let Some(key) = missing.first() {
        return Err(WeightsError::MissingKey {
            path: file.to_string(),
            key: key.clone(),
            others: missing.len() - 1,
        });
    }

    let unexpected: Vec<String> = result
        .unused
        .into_iter()
        .filter(|key| !key.ends_with(BATCHES_TRACKED))
        .filter(|key| !(replace_head && key.starts_with(HEAD_PREFIX)))
        .collect();
    if let Some(key) = unexpected.first() {
        return Err(WeightsError::UnexpectedKey {
            path: file.to_string(),
            key: key.clone(),
            others: unexpected.len() - 1,
        });
    }
    Ok(())
}

//! Loading the vision tower and the projector from either checkpoint layout, and the
//! burn-store adapters a full-model loader needs for them.
//!
//! * transformers' native `model.safetensors`: keys `model.vision_tower.<path>` and
//!   `model.multi_modal_projector.<path>` are burn paths of [`Davit`] and
//!   [`MultiModalProjector`] once the prefixes are stripped; load with
//!   [`native_adapter`].
//! * Microsoft's original `pytorch_model.bin` (fp16): keys are first renamed by
//!   [`super::ORIGINAL_KEY_RULES`] and [`crate::models::florence2::projector::ORIGINAL_KEY_RULES`]
//!   into the native names without `model.`; load with [`original_adapter`], which keeps the
//!   raw `(in, out)` `image_projection` from being transposed.
//!
//! **Half precision.** burn-store does not convert dtypes: `PytorchStore` hands fp16 tensors of
//! a `pytorch_model.bin` to the model as fp16 (the loaded parameters would be `F16` tensors in
//! an `f32` model). Both adapters here therefore end with a [`CastFloatAdapter`] to the
//! backend's float type. `PytorchStore::apply_to` always uses its own `PyTorchToBurnAdapter`, so
//! the original layout is loaded by reading the store's snapshots and calling
//! [`burn_store::ModuleSnapshot::apply`] with [`original_adapter`], as [`load_original`] does.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use burn_store::{ModuleAdapter, PyTorchToBurnAdapter, TensorSnapshot};

use super::{Davit, DavitConfig, ORIGINAL_KEY_RULES, ORIGINAL_UNUSED_PREFIXES};
use crate::models::WeightsError;
use crate::models::checkpoint::{ApplyCheck, Checkpoint};
use crate::models::florence2::projector::{self, MultiModalProjector};

pub use crate::models::checkpoint::CastFloatAdapter;

/// Prefix of the vision tower's keys (native keys without `model.`).
pub const VISION_TOWER_PREFIX: &str = "vision_tower.";
/// Prefix of the projector's keys (native keys without `model.`).
pub const PROJECTOR_PREFIX: &str = "multi_modal_projector.";

/// burn-store's `PyTorchToBurnAdapter` (transpose `Linear` weights, LayerNorm
/// `weight`/`bias` -> `gamma`/`beta`) for Microsoft's original layout, except that the tensor
/// loaded into a `Linear` named `image_projection` is left as it is: the original checkpoint
/// stores it as a raw `(in, out)` parameter, which already is burn's layout (see
/// [`crate::models::florence2::projector::ORIGINAL_KEY_RULES`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct OriginalLayoutAdapter;

impl ModuleAdapter for OriginalLayoutAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        if is_raw_image_projection(snapshot) {
            snapshot.clone()
        } else {
            PyTorchToBurnAdapter.adapt(snapshot)
        }
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, container_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// Whether the burn path being loaded ends in `image_projection.weight`.
fn is_raw_image_projection(snapshot: &TensorSnapshot) -> bool {
    let path = snapshot.path_stack.as_deref().unwrap_or_default();
    matches!(path, [.., parent, leaf] if parent == "image_projection" && leaf == "weight")
}

/// The adapter for transformers' native checkpoints: `PyTorchToBurnAdapter`, then a cast of
/// the floats to `B`'s float type.
pub fn native_adapter<B: Backend>() -> Box<dyn ModuleAdapter> {
    Box::new(PyTorchToBurnAdapter.chain(CastFloatAdapter::for_backend::<B>()))
}

/// The adapter for Microsoft's original checkpoints: [`OriginalLayoutAdapter`], then a cast of
/// the floats (fp16 in the published files) to `B`'s float type.
pub fn original_adapter<B: Backend>() -> Box<dyn ModuleAdapter> {
    Box::new(OriginalLayoutAdapter.chain(CastFloatAdapter::for_backend::<B>()))
}

/// The vision tower and projector of transformers' native `model.safetensors` (keys
/// `model.vision_tower.*`, `model.multi_modal_projector.*`; the other keys are ignored).
///
/// Every parameter must be in the file with the right shape and every tensor under the two
/// prefixes must have a place, except the cosine table ([`projector::UNUSED_KEYS`]). The file
/// is read by its extension: `.safetensors`, anything else as a `torch.save` pickle.
///
/// # Errors
/// [`WeightsError::InvalidConfig`], [`WeightsError::Read`], and
/// [`WeightsError::ShapeMismatch`] / [`WeightsError::BadTensor`] / [`WeightsError::MissingKey`] /
/// [`WeightsError::UnexpectedKey`] naming the first offending key (burn path with its prefix).
pub fn load_native<B: Backend>(
    path: impl AsRef<Path>,
    config: &DavitConfig,
    device: &B::Device,
) -> Result<(Davit<B>, MultiModalProjector<B>), WeightsError> {
    let checkpoint = Checkpoint::open(path.as_ref())?.remap(&[(r"^model\.", "")])?;
    load_parts(&checkpoint, native_adapter::<B>, config, device)
}

/// The vision tower and projector of Microsoft's original `pytorch_model.bin` (fp16 or fp32;
/// keys renamed by the two `ORIGINAL_KEY_RULES`; the language model's keys are ignored).
///
/// Every parameter must be in the file with the right shape and every vision or projector
/// tensor must have a place, except the cosine table ([`projector::UNUSED_KEYS`]) and the
/// original tower's unused final norm and head ([`ORIGINAL_UNUSED_PREFIXES`]). The file is
/// read by its extension, as [`load_native`] does.
///
/// # Errors
/// As [`load_native`].
pub fn load_original<B: Backend>(
    path: impl AsRef<Path>,
    config: &DavitConfig,
    device: &B::Device,
) -> Result<(Davit<B>, MultiModalProjector<B>), WeightsError> {
    let rules: Vec<(&str, &str)> = ORIGINAL_KEY_RULES
        .iter()
        .chain(projector::ORIGINAL_KEY_RULES)
        .copied()
        .collect();
    let checkpoint = Checkpoint::open(path.as_ref())?.remap(&rules)?;
    load_parts(&checkpoint, original_adapter::<B>, config, device)
}

fn load_parts<B: Backend>(
    checkpoint: &Checkpoint,
    adapter: fn() -> Box<dyn ModuleAdapter>,
    config: &DavitConfig,
    device: &B::Device,
) -> Result<(Davit<B>, MultiModalProjector<B>), WeightsError> {
    let invalid = |e: crate::FedError| WeightsError::InvalidConfig(e.to_string());
    let mut tower: Davit<B> = config.init(device).map_err(invalid)?;
    let mut projector: MultiModalProjector<B> = config.init_projector(device).map_err(invalid)?;

    let result = checkpoint
        .part(VISION_TOWER_PREFIX)
        .apply(&mut tower, None, adapter());
    ApplyCheck::new(checkpoint.file())
        .prefix(VISION_TOWER_PREFIX)
        .ignore_unused(|key| ORIGINAL_UNUSED_PREFIXES.iter().any(|p| key.starts_with(p)))
        .check(result)?;
    let result = checkpoint
        .part(PROJECTOR_PREFIX)
        .apply(&mut projector, None, adapter());
    ApplyCheck::new(checkpoint.file())
        .prefix(PROJECTOR_PREFIX)
        .ignore_unused(|key| projector::UNUSED_KEYS.contains(&key))
        .check(result)?;
    Ok((tower, projector))
}

/// Keys of a checkpoint as a sorted map to their shapes (PyTorch layout), after the given
/// remapping rules: a debugging aid to compare a file with [`Davit`]'s module paths.
///
/// # Errors
/// [`WeightsError::Read`] if the file cannot be read or a rule is not a valid regex.
pub fn checkpoint_shapes(
    path: impl AsRef<Path>,
    rules: &[(&str, &str)],
) -> Result<BTreeMap<String, Vec<usize>>, WeightsError> {
    let checkpoint = Checkpoint::open(path.as_ref())?.remap(rules)?;
    Ok(checkpoint
        .snapshots()
        .iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect())
}

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
//! [`ModuleSnapshot::apply`] with [`original_adapter`], as [`load_original`] does.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::{DType, Element};
use burn_store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, TensorSnapshot,
};

use super::{Davit, DavitConfig, ORIGINAL_KEY_RULES, ORIGINAL_UNUSED_PREFIXES};
use crate::models::WeightsError;
use crate::models::florence2::projector::{self, MultiModalProjector};

/// Prefix of the vision tower's keys (native keys without `model.`).
pub const VISION_TOWER_PREFIX: &str = "vision_tower.";
/// Prefix of the projector's keys (native keys without `model.`).
pub const PROJECTOR_PREFIX: &str = "multi_modal_projector.";

/// Converts every floating-point tensor whose dtype is not `target` (fp16 and bf16 checkpoints,
/// typically) to `target`, whatever module it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct CastFloatAdapter {
    target: DType,
}

impl CastFloatAdapter {
    /// Casts floats to `target`.
    pub fn new(target: DType) -> Self {
        Self { target }
    }

    /// Casts floats to the float type of backend `B` (`f32` on `Flex`).
    pub fn for_backend<B: Backend>() -> Self {
        Self::new(<B::FloatElem as Element>::dtype())
    }
}

impl ModuleAdapter for CastFloatAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let is_float = matches!(
            snapshot.dtype,
            DType::F16 | DType::BF16 | DType::F32 | DType::F64
        );
        if !is_float || snapshot.dtype == self.target {
            return snapshot.clone();
        }
        let target = self.target;
        let data = snapshot.clone_data_fn();
        TensorSnapshot::from_closure(
            Rc::new(move || Ok(data()?.convert_dtype(target))),
            target,
            snapshot.shape.clone(),
            snapshot.path_stack.clone().unwrap_or_default(),
            snapshot.container_stack.clone().unwrap_or_default(),
            snapshot.tensor_id.unwrap_or_default(),
        )
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

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
/// prefixes must have a place, except the cosine table ([`projector::UNUSED_KEYS`]).
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
    let path = path.as_ref();
    let mut store = SafetensorsStore::from_file(path);
    let snapshots = read_snapshots(&mut store, path)?;
    let snapshots = remap(snapshots, &[(r"^model\.", "")], path)?;
    load_parts(snapshots, native_adapter::<B>, path, config, device)
}

/// The vision tower and projector of Microsoft's original `pytorch_model.bin` (fp16 or fp32;
/// keys renamed by the two `ORIGINAL_KEY_RULES`; the language model's keys are ignored).
///
/// Every parameter must be in the file with the right shape and every vision or projector
/// tensor must have a place, except the cosine table ([`projector::UNUSED_KEYS`]) and the
/// original tower's unused final norm and head ([`ORIGINAL_UNUSED_PREFIXES`]).
///
/// # Errors
/// As [`load_native`].
pub fn load_original<B: Backend>(
    path: impl AsRef<Path>,
    config: &DavitConfig,
    device: &B::Device,
) -> Result<(Davit<B>, MultiModalProjector<B>), WeightsError> {
    let path = path.as_ref();
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    let snapshots = read_snapshots(&mut store, path)?;
    let rules: Vec<(&str, &str)> = ORIGINAL_KEY_RULES
        .iter()
        .chain(projector::ORIGINAL_KEY_RULES)
        .copied()
        .collect();
    let snapshots = remap(snapshots, &rules, path)?;
    load_parts(snapshots, original_adapter::<B>, path, config, device)
}

fn read_error(path: &Path, reason: impl ToString) -> WeightsError {
    WeightsError::Read {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_snapshots<S: ModuleStore>(
    store: &mut S,
    path: &Path,
) -> Result<Vec<TensorSnapshot>, WeightsError> {
    Ok(store
        .get_all_snapshots()
        .map_err(|e| read_error(path, e))?
        .values()
        .cloned()
        .collect())
}

fn remap(
    snapshots: Vec<TensorSnapshot>,
    rules: &[(&str, &str)],
    path: &Path,
) -> Result<Vec<TensorSnapshot>, WeightsError> {
    let remapper = KeyRemapper::from_patterns(rules.to_vec()).map_err(|e| read_error(path, e))?;
    Ok(remapper.remap(snapshots).0)
}

/// The snapshots under `prefix`, with the prefix removed from their paths.
fn part(snapshots: &[TensorSnapshot], prefix: &str) -> Vec<TensorSnapshot> {
    snapshots
        .iter()
        .filter_map(|snapshot| {
            let key = snapshot.full_path();
            let rest = key.strip_prefix(prefix)?;
            let mut snapshot = snapshot.clone();
            snapshot.path_stack = Some(rest.split('.').map(str::to_string).collect());
            Some(snapshot)
        })
        .collect()
}

fn load_parts<B: Backend>(
    snapshots: Vec<TensorSnapshot>,
    adapter: fn() -> Box<dyn ModuleAdapter>,
    path: &Path,
    config: &DavitConfig,
    device: &B::Device,
) -> Result<(Davit<B>, MultiModalProjector<B>), WeightsError> {
    let invalid = |e: crate::FedError| WeightsError::InvalidConfig(e.to_string());
    let mut tower: Davit<B> = config.init(device).map_err(invalid)?;
    let mut projector: MultiModalProjector<B> = config.init_projector(device).map_err(invalid)?;
    let file = path.display().to_string();

    let result = tower.apply(
        part(&snapshots, VISION_TOWER_PREFIX),
        None,
        Some(adapter()),
        true,
    );
    check(result, &file, VISION_TOWER_PREFIX, |key| {
        ORIGINAL_UNUSED_PREFIXES.iter().any(|p| key.starts_with(p))
    })?;
    let result = projector.apply(
        part(&snapshots, PROJECTOR_PREFIX),
        None,
        Some(adapter()),
        true,
    );
    check(result, &file, PROJECTOR_PREFIX, |key| {
        projector::UNUSED_KEYS.contains(&key)
    })?;
    Ok((tower, projector))
}

/// Turns burn-store's report on one part into the first error, in this order: bad tensors,
/// missing keys, unexpected keys (not `ignored`). Keys are reported with the part's `prefix`.
fn check(
    result: ApplyResult,
    file: &str,
    prefix: &str,
    ignored: impl Fn(&str) -> bool,
) -> Result<(), WeightsError> {
    let path = file.to_string();
    let full = |key: &str| format!("{prefix}{key}");
    if let Some(error) = result.errors.into_iter().next() {
        return Err(match error {
            ApplyError::ShapeMismatch {
                path: key,
                expected,
                found,
            } => WeightsError::ShapeMismatch {
                path,
                key: full(&key),
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            ApplyError::DTypeMismatch {
                path: key,
                expected,
                found,
            } => WeightsError::BadTensor {
                path,
                key: full(&key),
                reason: format!("data type {found:?}, the model expects {expected:?}"),
            },
            ApplyError::AdapterError { path: key, message }
            | ApplyError::LoadError { path: key, message } => WeightsError::BadTensor {
                path,
                key: full(&key),
                reason: message,
            },
        });
    }
    let mut missing: Vec<String> = result
        .missing
        .into_iter()
        .map(|(key, _)| full(&key))
        .collect();
    missing.sort();
    if let Some(key) = missing.first() {
        return Err(WeightsError::MissingKey {
            path,
            key: key.clone(),
            others: missing.len() - 1,
        });
    }
    let applied: HashSet<&str> = result.applied.iter().map(String::as_str).collect();
    let mut unexpected: Vec<String> = result
        .unused
        .iter()
        .filter(|key| !loaded_under_burn_name(key, &applied))
        .map(|key| full(key))
        .filter(|key| !ignored(key))
        .collect();
    unexpected.sort();
    if let Some(key) = unexpected.first() {
        return Err(WeightsError::UnexpectedKey {
            path,
            key: key.clone(),
            others: unexpected.len() - 1,
        });
    }
    Ok(())
}

/// Whether `key` is a PyTorch LayerNorm name (`weight`, `bias`) whose burn name (`gamma`,
/// `beta`) was loaded: burn-store finds such tensors through the adapter's alternative names
/// but still lists the PyTorch key among the `unused` ones.
fn loaded_under_burn_name(key: &str, applied: &HashSet<&str>) -> bool {
    let burn_name = |stem: &str, name: &str| applied.contains(format!("{stem}{name}").as_str());
    if let Some(stem) = key.strip_suffix("weight") {
        burn_name(stem, "gamma")
    } else if let Some(stem) = key.strip_suffix("bias") {
        burn_name(stem, "beta")
    } else {
        false
    }
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
    let path = path.as_ref();
    let snapshots = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_snapshots(&mut SafetensorsStore::from_file(path), path)?,
        _ => read_snapshots(
            &mut PytorchStore::from_file(path).map_indices_contiguous(false),
            path,
        )?,
    };
    Ok(remap(snapshots, rules, path)?
        .into_iter()
        .map(|s| (s.full_path(), s.shape.to_vec()))
        .collect())
}

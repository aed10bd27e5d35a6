//! What the checkpoint loaders have in common (torchvision's MobileNetV3, Florence-2's vision
//! tower, projector and BART, the whole-Florence-2 key check), on top of burn-store:
//!
//! * [`Checkpoint`]: the tensors of a `.safetensors` file or a `torch.save` pickle (picked by
//!   the file's extension, or named), as lazy burn-store snapshots, with keys renamed by regex
//!   rules, split by prefix, and applied to a module;
//! * [`ApplyCheck`]: burn-store's [`ApplyResult`] turned into the first typed
//!   [`WeightsError`], with caller-given keys to ignore;
//! * [`CastFloatAdapter`]: the float cast half-precision checkpoints need (burn-store keeps a
//!   tensor's file dtype).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::{DType, Element};
use burn_store::{
    ApplyError, ApplyResult, KeyRemapper, ModuleAdapter, ModuleSnapshot, ModuleStore, PathFilter,
    PytorchStore, SafetensorsStore, TensorSnapshot,
};

use super::WeightsError;
use crate::guard::no_panic;

/// The dependency named when it panics.
const BURN_STORE: &str = "burn-store's checkpoint reader";

/// How a checkpoint file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `.safetensors`.
    Safetensors,
    /// A `torch.save` pickle (`.pth`, `.bin`, `.pt`, ...).
    Pytorch,
}

impl Format {
    /// `.safetensors` (any case) is [`Format::Safetensors`], anything else a pickle.
    pub(crate) fn of(path: &Path) -> Self {
        let safetensors = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("safetensors"));
        if safetensors {
            Self::Safetensors
        } else {
            Self::Pytorch
        }
    }
}

/// The tensors of one checkpoint file as lazy snapshots (data is read when a tensor is
/// applied), keyed by their path after any renaming.
#[derive(Clone)]
pub(crate) struct Checkpoint {
    file: String,
    snapshots: Vec<TensorSnapshot>,
}

impl Checkpoint {
    /// Opens `path` in the format its extension says ([`Format::of`]).
    ///
    /// # Errors
    /// [`WeightsError::Read`] if the file cannot be read.
    pub(crate) fn open(path: &Path) -> Result<Self, WeightsError> {
        Self::open_as(path, Format::of(path))
    }

    /// Opens `path` as `format`. Indices are kept as they are in the file (no contiguous
    /// renumbering), so keys are the file's own.
    ///
    /// # Errors
    /// [`WeightsError::Read`] if the file cannot be read.
    pub(crate) fn open_as(path: &Path, format: Format) -> Result<Self, WeightsError> {
        let file = path.display().to_string();
        // burn-store's readers (the `.pth` zip and pickle reader above all) can panic on
        // corrupt bytes: the read runs under `no_panic` and a panic is a `Read` error.
        let snapshots = no_panic(BURN_STORE, || match format {
            Format::Safetensors => all_snapshots(&mut SafetensorsStore::from_file(path)),
            Format::Pytorch => {
                all_snapshots(&mut PytorchStore::from_file(path).map_indices_contiguous(false))
            }
        })
        .and_then(|snapshots| snapshots)
        .map_err(|reason| read_error(&file, reason))?;
        Ok(Self { file, snapshots })
    }

    /// The file, as errors name it.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// A [`WeightsError::Read`] about this file.
    pub(crate) fn read_error(&self, reason: impl ToString) -> WeightsError {
        read_error(&self.file, reason)
    }

    /// Renames the keys by regex rules (`from`, `to`), applied in order, each to the result of
    /// the previous one (burn-store's `KeyRemapper`). When two tensors end up with one name, the
    /// last one in key order is kept.
    ///
    /// # Errors
    /// [`WeightsError::Read`] if a rule is not a valid regex.
    pub(crate) fn remap(self, rules: &[(&str, &str)]) -> Result<Self, WeightsError> {
        if rules.is_empty() {
            return Ok(self);
        }
        let remapper =
            KeyRemapper::from_patterns(rules.to_vec()).map_err(|e| self.read_error(e))?;
        let (renamed, _) = remapper.remap(self.snapshots);
        let unique: BTreeMap<String, TensorSnapshot> = renamed
            .into_iter()
            .map(|snapshot| (snapshot.full_path(), snapshot))
            .collect();
        Ok(Self {
            file: self.file,
            snapshots: unique.into_values().collect(),
        })
    }

    /// The tensors, in key order.
    pub(crate) fn snapshots(&self) -> &[TensorSnapshot] {
        &self.snapshots
    }

    /// The keys, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.snapshots.iter().map(TensorSnapshot::full_path)
    }

    /// Whether the checkpoint has a tensor named `key`.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The tensor named `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&TensorSnapshot> {
        self.snapshots.iter().find(|s| s.full_path() == key)
    }

    /// The tensors under `prefix`, with the prefix removed from their keys.
    pub(crate) fn part(&self, prefix: &str) -> Self {
        let snapshots = self
            .snapshots
            .iter()
            .filter_map(|snapshot| {
                let key = snapshot.full_path();
                let rest = key.strip_prefix(prefix)?;
                let mut snapshot = snapshot.clone();
                snapshot.path_stack = Some(rest.split('.').map(str::to_string).collect());
                Some(snapshot)
            })
            .collect();
        Self {
            file: self.file.clone(),
            snapshots,
        }
    }

    /// Loads the tensors into `module` (only the paths `filter` accepts, when given), each
    /// transformed by `adapter`; enum variant names are left out of module paths, as PyTorch
    /// has none. What loaded, and what did not, is in the result: see [`ApplyCheck`].
    pub(crate) fn apply<B: Backend, M: ModuleSnapshot<B>>(
        &self,
        module: &mut M,
        filter: Option<PathFilter>,
        adapter: Box<dyn ModuleAdapter>,
    ) -> ApplyResult {
        // Tensor data is read lazily here, where burn-store may panic on a corrupt file: a
        // panic becomes a load error (the module is then discarded by the caller's check).
        no_panic(BURN_STORE, || {
            module.apply(self.snapshots.clone(), filter, Some(adapter), true)
        })
        .unwrap_or_else(|message| ApplyResult {
            applied: Vec::new(),
            skipped: Vec::new(),
            missing: Vec::new(),
            unused: Vec::new(),
            errors: vec![ApplyError::LoadError {
                path: "(tensor data)".to_string(),
                message,
            }],
        })
    }
}

fn all_snapshots<S: ModuleStore>(store: &mut S) -> Result<Vec<TensorSnapshot>, String> {
    Ok(store
        .get_all_snapshots()
        .map_err(|e| e.to_string())?
        .values()
        .cloned()
        .collect())
}

fn read_error(file: &str, reason: impl ToString) -> WeightsError {
    WeightsError::Read {
        path: file.to_string(),
        reason: reason.to_string(),
    }
}

/// Which keys of an [`ApplyResult`] are errors: turns the result into the first
/// [`WeightsError`], in this order: bad tensors (shape, data type, data; the first met while
/// loading), then missing keys, then unexpected (unused) keys, each naming the first key in
/// sorted order and counting the others. Keys are reported, and given to the ignore
/// predicates, with [`ApplyCheck::prefix`] in front.
///
/// A PyTorch LayerNorm key (`<stem>.weight`, `<stem>.bias`) is never unexpected when the burn
/// name it stands for (`<stem>.gamma`, `<stem>.beta`) was loaded: burn-store finds those
/// tensors through the adapter's alternative names but still lists the PyTorch keys as unused.
pub(crate) struct ApplyCheck<'a> {
    file: &'a str,
    prefix: &'a str,
    ignore_missing: Box<dyn Fn(&str) -> bool + 'a>,
    ignore_unused: Box<dyn Fn(&str) -> bool + 'a>,
}

impl<'a> ApplyCheck<'a> {
    /// Every missing and every unused key is an error; errors name `file`.
    pub(crate) fn new(file: &'a str) -> Self {
        Self {
            file,
            prefix: "",
            ignore_missing: Box::new(|_| false),
            ignore_unused: Box::new(|_| false),
        }
    }

    /// Puts `prefix` in front of every key (for a part loaded without its prefix).
    pub(crate) fn prefix(mut self, prefix: &'a str) -> Self {
        self.prefix = prefix;
        self
    }

    /// Missing keys for which `ignore` is true are not errors.
    pub(crate) fn ignore_missing(mut self, ignore: impl Fn(&str) -> bool + 'a) -> Self {
        self.ignore_missing = Box::new(ignore);
        self
    }

    /// Unused keys for which `ignore` is true are not errors.
    pub(crate) fn ignore_unused(mut self, ignore: impl Fn(&str) -> bool + 'a) -> Self {
        self.ignore_unused = Box::new(ignore);
        self
    }

    /// The first error of `result`, if any.
    ///
    /// # Errors
    /// [`WeightsError::ShapeMismatch`], [`WeightsError::BadTensor`],
    /// [`WeightsError::MissingKey`] or [`WeightsError::UnexpectedKey`].
    pub(crate) fn check(self, result: ApplyResult) -> Result<(), WeightsError> {
        let path = self.file.to_string();
        let full = |key: &str| format!("{}{key}", self.prefix);
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

        let missing: Vec<String> = result
            .missing
            .into_iter()
            .map(|(key, _)| full(&key))
            .filter(|key| !(self.ignore_missing)(key))
            .collect();
        if let Some((key, others)) = first_sorted(missing) {
            return Err(WeightsError::MissingKey { path, key, others });
        }

        let applied: HashSet<&str> = result.applied.iter().map(String::as_str).collect();
        let unexpected: Vec<String> = result
            .unused
            .iter()
            .filter(|key| !loaded_under_burn_name(key, &applied))
            .map(|key| full(key))
            .filter(|key| !(self.ignore_unused)(key))
            .collect();
        match first_sorted(unexpected) {
            Some((key, others)) => Err(WeightsError::UnexpectedKey { path, key, others }),
            None => Ok(()),
        }
    }
}

/// The first of `keys` in sorted order, and how many others there are (as errors name them).
pub(crate) fn first_sorted(mut keys: Vec<String>) -> Option<(String, usize)> {
    keys.sort();
    let others = keys.len().checked_sub(1)?;
    Some((keys.swap_remove(0), others))
}

/// Whether `key` is a PyTorch LayerNorm name (`weight`, `bias`) whose burn name (`gamma`,
/// `beta`) was loaded.
fn loaded_under_burn_name(key: &str, applied: &HashSet<&str>) -> bool {
    let burn_key = if let Some(stem) = key.strip_suffix("weight") {
        (stem, "gamma")
    } else if let Some(stem) = key.strip_suffix("bias") {
        (stem, "beta")
    } else {
        return false;
    };
    let (stem, name) = burn_key;
    (stem.is_empty() || stem.ends_with('.')) && applied.contains(format!("{stem}{name}").as_str())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_aliases_need_their_burn_name_loaded() {
        let applied: HashSet<&str> = ["enc.norm.gamma", "enc.norm.beta", "gamma"].into();
        assert!(loaded_under_burn_name("enc.norm.weight", &applied));
        assert!(loaded_under_burn_name("enc.norm.bias", &applied));
        assert!(loaded_under_burn_name("weight", &applied));
        assert!(!loaded_under_burn_name("enc.fc.weight", &applied));
        assert!(!loaded_under_burn_name("enc.normweight", &applied));
        assert!(!loaded_under_burn_name("enc.norm.running_mean", &applied));
    }

    #[test]
    fn first_sorted_counts_the_others() {
        let keys = vec!["b".to_string(), "c".to_string(), "a".to_string()];
        assert_eq!(first_sorted(keys), Some(("a".to_string(), 2)));
        assert_eq!(first_sorted(Vec::new()), None);
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            Format::of(Path::new("a/model.safetensors")),
            Format::Safetensors
        );
        assert_eq!(
            Format::of(Path::new("a/model.SafeTensors")),
            Format::Safetensors
        );
        assert_eq!(
            Format::of(Path::new("a/pytorch_model.bin")),
            Format::Pytorch
        );
        assert_eq!(Format::of(Path::new("a/model")), Format::Pytorch);
    }
}

//! Reading a peft adapter folder into a module's adapters.

use std::path::Path;

use burn::prelude::*;

use super::config::PeftAdapterConfig;
use super::entries::{adapter_entries, check_ranks};
use super::{PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE};
use crate::error::{FedError, Result};
use crate::lora::LoraConfig;
use crate::params::payload::{Payload, PayloadError, TensorValues, decode};
use crate::params::state::apply_tensors;

/// Reads a peft adapter from `dir` into the [`PersonalizedLora`](crate::PersonalizedLora)s of
/// `module` and returns the updated copy (`module` is left untouched).
///
/// `key_prefix` is the one given to [`save_peft_adapter`](super::save_peft_adapter) (see [`PeftExport::key_prefix`](super::PeftExport::key_prefix)) and
/// `lora` the configuration the module's adapters were built with: the file's `r` must equal
/// `lora.rank` and its scaling `lora.scaling()` (see the module docs), and every adapter's rank
/// must be `lora.rank`. The file must hold exactly the module's adapters: both matrices of
/// every adapter, nothing else. Every replaced tensor keeps its parameter id and its
/// `require_grad` flag (it goes through [`apply_tensors`]); other parameters are not touched.
/// Tensors may be stored in F32, F16 or BF16.
///
/// # Errors
/// * [`FedError::Io`] naming `adapter_config.json` or `adapter_model.safetensors` when one is
///   missing or unreadable; [`FedError::InvalidConfig`] naming `adapter_config.json` for a
///   config that does not parse.
/// * [`FedError::InvalidConfig`] with field `r` or `lora_alpha` when the rank or scaling
///   differs, or naming the unsupported feature (see [`PeftAdapterConfig::read`]).
/// * [`FedError::Payload`] with [`PayloadError::UnknownTensor`] naming a file key that matches
///   no adapter of the module, [`PayloadError::MissingTensor`] naming the key of an adapter
///   matrix the file lacks, [`PayloadError::ShapeMismatch`] naming the key whose shape
///   differs, [`PayloadError::UnsupportedDtype`], [`PayloadError::NonFinite`] or
///   [`PayloadError::Malformed`].
pub fn load_peft_adapter<B: Backend, M: Module<B>>(
    module: &M,
    dir: impl AsRef<Path>,
    key_prefix: &str,
    lora: &LoraConfig,
) -> Result<M> {
    let dir = dir.as_ref();
    let config = PeftAdapterConfig::read(dir)?;
    let config_path = dir.join(PEFT_CONFIG_FILE);
    if config.r != lora.rank {
        return Err(FedError::config(
            "r",
            format!(
                "{} has r = {} but the module's adapters were built with rank {}",
                config_path.display(),
                config.r,
                lora.rank
            ),
        ));
    }
    let (file_scaling, ours) = (config.scaling(), lora.scaling());
    if (file_scaling - ours).abs() > 1e-9 * ours.abs().max(1.0) {
        return Err(FedError::config(
            "lora_alpha",
            format!(
                "{} gives the scaling {file_scaling} (lora_alpha {}, r {}{}) but the module's \
                 adapters use alpha / rank = {ours}",
                config_path.display(),
                config.lora_alpha,
                config.r,
                if config.use_rslora { ", rsLoRA" } else { "" }
            ),
        ));
    }

    let (entries, _) = adapter_entries(module, key_prefix)?;
    check_ranks(&entries, lora.rank, "the LoraConfig given")?;

    let path = dir.join(PEFT_WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| PayloadError::Malformed(format!("{}: {e}", path.display())))?;
    let mut payload = Payload::default();
    let mut names = file.names();
    names.sort_unstable();
    for key in names {
        let entry = entries
            .get(key)
            .ok_or_else(|| PayloadError::UnknownTensor(key.to_string()))?;
        let view = file
            .tensor(key)
            .map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if view.shape() != entry.shape.as_slice() {
            return Err(PayloadError::ShapeMismatch {
                name: key.to_string(),
                expected: entry.shape.clone(),
                found: view.shape().to_vec(),
            }
            .into());
        }
        let values = decode(key, &view)?;
        let tensor = TensorValues::new(key, view.shape().to_vec(), values)?;
        payload.tensors.insert(entry.path.clone(), tensor);
    }
    if let Some((key, _)) = entries
        .iter()
        .find(|(_, entry)| !payload.tensors.contains_key(&entry.path))
    {
        return Err(PayloadError::MissingTensor(key.clone()).into());
    }
    Ok(apply_tensors(module, &payload)?)
}

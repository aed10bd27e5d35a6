//! Writing a module's adapters as a peft adapter folder.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::TensorView;

use super::config::{PeftExport, config_json};
use super::entries::{adapter_entries, check_ranks};
use super::{PEFT_CONFIG_FILE, PEFT_WEIGHTS_FILE};
use crate::error::{FedError, Result};
use crate::params::payload::PayloadError;

/// Writes every [`PersonalizedLora`](crate::PersonalizedLora) of `module` as a peft adapter
/// into `dir` (created if needed): `adapter_model.safetensors` with the keys of [`peft_key`](super::peft_key) and
/// `adapter_config.json` with every field peft 0.21 writes (see the module docs). The files
/// load with `PeftModel.from_pretrained(base_model, dir)`.
///
/// # Errors
/// [`FedError::InvalidConfig`] if `export.lora` is invalid, the module holds no adapter, or an
/// adapter's rank differs from `export.lora.rank` (field `r`); [`FedError::Io`] naming the
/// file that could not be written.
pub fn save_peft_adapter<B: Backend, M: Module<B>>(
    module: &M,
    dir: impl AsRef<Path>,
    export: &PeftExport,
) -> Result<()> {
    export.lora.validate()?;
    let (entries, payload) = adapter_entries(module, &export.key_prefix)?;
    if entries.is_empty() {
        return Err(FedError::config(
            "module",
            "holds no PersonalizedLora adapter to save",
        ));
    }
    check_ranks(&entries, export.lora.rank, "the export's LoraConfig")?;

    let encoded: Vec<(&str, &[usize], Vec<u8>)> = entries
        .iter()
        .filter_map(|(key, entry)| {
            let tensor = payload.tensors.get(&entry.path)?;
            Some((
                key.as_str(),
                tensor.shape.as_slice(),
                export.dtype.encode(&tensor.values),
            ))
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(key, shape, bytes)| {
            TensorView::new(export.dtype.safetensors_dtype(), shape.to_vec(), bytes)
                .map(|view| (*key, view))
                .map_err(|e| PayloadError::Malformed(e.to_string()))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| PayloadError::Malformed(e.to_string()))?;

    let mut targets: Vec<&str> = entries.values().map(|e| e.module.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    let config = config_json(export, &targets);

    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
    let weights = dir.join(PEFT_WEIGHTS_FILE);
    std::fs::write(&weights, bytes).map_err(|e| FedError::io(&weights, e))?;
    let path = dir.join(PEFT_CONFIG_FILE);
    let mut text = serde_json::to_string_pretty(&config)?;
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| FedError::io(&path, e))
}

//! The adapter matrices of a module by peft key, and the rank check both directions share.

use std::collections::BTreeMap;

use burn::prelude::*;

use super::PEFT_KEY_ROOT;
use crate::error::{FedError, Result};
use crate::lora::AdapterMatrix;
use crate::params::path::TensorRole;
use crate::params::payload::Payload;
use crate::params::state::collect_where;

/// peft's saved key of one adapter matrix:
/// `base_model.model.{key_prefix}{layer_path}.lora_A.weight` (`lora_B` for
/// [`AdapterMatrix::B`]), where `layer_path` is the burn path of the
/// [`PersonalizedLora`](crate::PersonalizedLora) (e.g. `decoder.layers.1.self_attn.q_proj`).
pub fn peft_key(key_prefix: &str, layer_path: &str, matrix: AdapterMatrix) -> String {
    let matrix = match matrix {
        AdapterMatrix::A => "lora_A",
        AdapterMatrix::B => "lora_B",
    };
    format!(
        "{PEFT_KEY_ROOT}{}.{matrix}.weight",
        module_name(key_prefix, layer_path)
    )
}

/// The PyTorch module name of a layer: `key_prefix` + `layer_path` (the prefix alone, without
/// its trailing dot, for a module that is itself the adapter).
fn module_name(key_prefix: &str, layer_path: &str) -> String {
    if layer_path.is_empty() {
        key_prefix.trim_end_matches('.').to_string()
    } else {
        format!("{key_prefix}{layer_path}")
    }
}

/// One adapter matrix of a module.
pub(super) struct Entry {
    /// Module path of the parameter (`...q_proj.lora_a`), the key of a [`Payload`].
    pub(super) path: String,
    /// PyTorch module name of its layer.
    pub(super) module: String,
    /// Its shape.
    pub(super) shape: Vec<usize>,
}

/// Every adapter matrix of `module`, by peft key, with its values.
pub(super) fn adapter_entries<B: Backend, M: Module<B>>(
    module: &M,
    key_prefix: &str,
) -> Result<(BTreeMap<String, Entry>, Payload)> {
    let payload = collect_where(module, |_, role| matches!(role, TensorRole::Adapter(_)));
    let mut entries = BTreeMap::new();
    for (path, tensor) in &payload.tensors {
        let (layer, matrix) = if let Some(layer) = strip_matrix(path, "lora_a") {
            (layer, AdapterMatrix::A)
        } else if let Some(layer) = strip_matrix(path, "lora_b") {
            (layer, AdapterMatrix::B)
        } else {
            continue;
        };
        let module = module_name(key_prefix, layer);
        if module.is_empty() {
            return Err(FedError::config(
                "key_prefix",
                "must name the layer when the module is itself an adapter",
            ));
        }
        let entry = Entry {
            path: path.clone(),
            module,
            shape: tensor.shape.clone(),
        };
        entries.insert(peft_key(key_prefix, layer, matrix), entry);
    }
    Ok((entries, payload))
}

/// `a.b.lora_a` -> `a.b`, `lora_a` -> ``.
fn strip_matrix<'a>(path: &'a str, matrix: &str) -> Option<&'a str> {
    if path == matrix {
        return Some("");
    }
    path.strip_suffix(matrix)?.strip_suffix('.')
}

/// Checks that every adapter's rank (first dimension of `lora_a`) is `rank`.
pub(super) fn check_ranks(
    entries: &BTreeMap<String, Entry>,
    rank: usize,
    source: &str,
) -> Result<()> {
    for entry in entries.values() {
        if entry.path.ends_with("lora_a") && entry.shape.first() != Some(&rank) {
            return Err(FedError::config(
                "r",
                format!(
                    "{source} has r = {rank} but the adapter `{}` has rank {}",
                    entry.path.trim_end_matches(".lora_a"),
                    entry.shape.first().copied().unwrap_or(0)
                ),
            ));
        }
    }
    Ok(())
}

//! Adapters in Hugging Face PEFT's on-disk format: `adapter_config.json` +
//! `adapter_model.safetensors`, so an adapter fine-tuned here loads in Python with
//! `PeftModel.from_pretrained(base, dir)`, and an adapter saved by `peft` loads here.
//!
//! # The format (peft 0.21)
//!
//! `adapter_model.safetensors` holds, for every adapted layer, two tensors named
//!
//! ```text
//! base_model.model.{module}.lora_A.weight   [r, in]
//! base_model.model.{module}.lora_B.weight   [out, r]
//! ```
//!
//! where `{module}` is the layer's PyTorch module name (for Florence-2's last decoder layer:
//! `model.language_model.decoder.layers.1.self_attn.q_proj`). peft leaves the adapter name
//! (`default`) out of the saved keys, and writes the metadata `format = "pt"`. The layouts are
//! those of [`PersonalizedLora::lora_a`](crate::PersonalizedLora::lora_a) and
//! [`PersonalizedLora::lora_b`](crate::PersonalizedLora::lora_b): nothing is transposed. Here
//! `{module}` is `key_prefix` followed by the burn module path of the
//! [`PersonalizedLora`](crate::PersonalizedLora) (enum variant names left out, see
//! [`crate::params::path`]); with the crate's naming rule (burn fields named after the
//! PyTorch attributes) the prefix is all that differs, e.g. `"model.language_model."` for a
//! BART module whose paths start at `decoder`.
//!
//! `adapter_config.json` is peft's `LoraConfig`, sorted keys, every field peft 0.21.2 writes
//! ([`save_peft_adapter`] writes them all, with peft's defaults): `peft_type: "LORA"`, `r`,
//! `lora_alpha`, `lora_dropout`, `target_modules` (the full module names), `bias: "none"`,
//! `fan_in_fan_out: false`, `use_rslora: false`, `use_dora: false`, `inference_mode: true`, ...
//!
//! # Scaling
//!
//! A [`PersonalizedLora`](crate::PersonalizedLora) multiplies its update by `alpha / r`, fixed
//! when it is built; burn's module visitors see its tensors but not that number. So both
//! directions take the [`LoraConfig`] the module's adapters were built with:
//! [`save_peft_adapter`] writes its `r`, `lora_alpha` and `lora_dropout`, and
//! [`load_peft_adapter`] refuses a file whose `r` or scaling (`lora_alpha / r`, or
//! `lora_alpha / sqrt(r)` with `use_rslora`) differs from it, rather than silently changing
//! what the module computes. To load a peft adapter trained with other settings, read them
//! first with [`PeftAdapterConfig::read`] and build the adapters with
//! [`PeftAdapterConfig::lora_config`]. Both directions also check every adapter's rank (the
//! first dimension of its `lora_a`) against the config's.
//!
//! # Limits
//!
//! Only plain LoRA on linear layers: no DoRA, no LoRA bias, no per-module `rank_pattern` /
//! `alpha_pattern`, no `modules_to_save` (such files are refused with a typed error). An
//! adapter on a 1x1 convolution ([`crate::lora::Pointwise`]) is written 2-D (`[r, in]`,
//! `[out, r]`), whereas peft's `Conv2d` adapters are `[r, in, 1, 1]` and `[out, r, 1, 1]`.
//!
//! # Example
//!
//! ```
//! use burn::backend::Flex;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::prelude::*;
//! use fedvlm::lora::{PeftExport, load_peft_adapter, save_peft_adapter};
//! use fedvlm::{LoraConfig, PersonalizedLora};
//!
//! #[derive(Module, Debug)]
//! struct Attention<B: Backend> {
//!     q_proj: PersonalizedLora<B>,
//!     k_proj: Linear<B>,
//! }
//!
//! let device = Default::default();
//! let lora = LoraConfig::new(4, 8.0);
//! let build = |seed| -> fedvlm::Result<Attention<Flex>> {
//!     Ok(Attention {
//!         q_proj: PersonalizedLora::from_linear(
//!             LinearConfig::new(16, 16).init(&device),
//!             &lora,
//!             seed,
//!         )?,
//!         k_proj: LinearConfig::new(16, 16).init(&device),
//!     })
//! };
//!
//! let dir = tempfile::tempdir().map_err(|e| fedvlm::FedError::io("tempdir", e))?;
//! let trained = build(1)?;
//! // writes `base_model.model.model.self_attn.q_proj.lora_A.weight` ([4, 16]) and `..lora_B..`
//! save_peft_adapter(&trained, dir.path(), &PeftExport::new("model.self_attn.", lora))?;
//!
//! let other = load_peft_adapter(&build(2)?, dir.path(), "model.self_attn.", &lora)?;
//! assert_eq!(other.q_proj.lora_a.val().to_data(), trained.q_proj.lora_a.val().to_data());
//! # Ok::<(), fedvlm::FedError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::TensorView;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdapterMatrix, LoraConfig};
use crate::error::{FedError, Result};
use crate::params::path::TensorRole;
use crate::params::payload::{Payload, PayloadError, TensorValues, WireDtype, decode};
use crate::params::state::{apply_tensors, collect_where};

/// File name of peft's adapter configuration.
pub const PEFT_CONFIG_FILE: &str = "adapter_config.json";
/// File name of peft's adapter weights.
pub const PEFT_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The prefix peft puts before every saved key (`PeftModel.base_model.model`).
pub const PEFT_KEY_ROOT: &str = "base_model.model.";
/// The peft version whose `adapter_config.json` field set [`save_peft_adapter`] writes.
pub const PEFT_FORMAT_VERSION: &str = "0.21.2";

/// `auto_mapping` of `adapter_config.json`: the transformers class of the base model, which
/// peft's `AutoPeftModel` uses to rebuild it (`PeftModel.from_pretrained` does not need it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftAutoMapping {
    /// The model class, e.g. `Florence2ForConditionalGeneration`.
    pub base_model_class: String,
    /// Its Python module, e.g. `transformers.models.florence2.modeling_florence2`.
    pub parent_library: String,
}

/// What [`save_peft_adapter`] needs besides the module.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftExport {
    /// Put before every adapter's burn path to form its PyTorch module name (include the
    /// trailing dot): `"model.language_model."` for a BART module whose paths start at
    /// `decoder.layers...`. May be empty.
    pub key_prefix: String,
    /// The configuration the module's adapters were built with: `r`, `lora_alpha` and
    /// `lora_dropout` of the file.
    pub lora: LoraConfig,
    /// `base_model_name_or_path` (a hub id such as `microsoft/Florence-2-base`, or a folder).
    pub base_model_name_or_path: Option<String>,
    /// `task_type` (peft's `TaskType` name, e.g. `SEQ_2_SEQ_LM`); `None` writes `null`, as peft
    /// does for a model wrapped without a task type.
    pub task_type: Option<String>,
    /// `auto_mapping`; `None` writes `null`.
    pub auto_mapping: Option<PeftAutoMapping>,
    /// Precision of the saved tensors (peft saves the model's dtype; f32 by default here).
    pub dtype: WireDtype,
}

impl PeftExport {
    /// An export with the given key prefix and adapter configuration, f32 tensors and no base
    /// model name, task type or auto mapping.
    pub fn new(key_prefix: impl Into<String>, lora: LoraConfig) -> Self {
        Self {
            key_prefix: key_prefix.into(),
            lora,
            base_model_name_or_path: None,
            task_type: None,
            auto_mapping: None,
            dtype: WireDtype::F32,
        }
    }

    /// Sets `base_model_name_or_path`.
    pub fn with_base_model(mut self, name_or_path: impl Into<String>) -> Self {
        self.base_model_name_or_path = Some(name_or_path.into());
        self
    }

    /// Sets `task_type`.
    pub fn with_task_type(mut self, task_type: impl Into<String>) -> Self {
        self.task_type = Some(task_type.into());
        self
    }

    /// Sets `auto_mapping`.
    pub fn with_auto_mapping(
        mut self,
        base_model_class: impl Into<String>,
        parent_library: impl Into<String>,
    ) -> Self {
        self.auto_mapping = Some(PeftAutoMapping {
            base_model_class: base_model_class.into(),
            parent_library: parent_library.into(),
        });
        self
    }

    /// Sets the precision of the saved tensors.
    pub fn with_dtype(mut self, dtype: WireDtype) -> Self {
        self.dtype = dtype;
        self
    }
}

/// The parts of a peft `adapter_config.json` that fedvlm uses, read with
/// [`PeftAdapterConfig::read`]. Other fields are ignored; configurations fedvlm cannot
/// represent are refused there.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftAdapterConfig {
    /// Rank `r`.
    pub r: usize,
    /// `lora_alpha`.
    pub lora_alpha: f64,
    /// `lora_dropout`.
    pub lora_dropout: f64,
    /// `use_rslora`: the scaling is `lora_alpha / sqrt(r)` instead of `lora_alpha / r`.
    pub use_rslora: bool,
    /// `target_modules` as written; a single regex (peft accepts a string) is its only element.
    pub target_modules: Vec<String>,
    /// `base_model_name_or_path`.
    pub base_model_name_or_path: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    peft_type: Option<String>,
    r: usize,
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    use_dora: Option<bool>,
    #[serde(default)]
    lora_bias: Option<bool>,
    #[serde(default)]
    bias: Option<String>,
    #[serde(default)]
    rank_pattern: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    alpha_pattern: Option<BTreeMap<String, Value>>,
    #[serde(default)]
    modules_to_save: Option<Value>,
    #[serde(default)]
    target_modules: Option<TargetModules>,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TargetModules {
    List(Vec<String>),
    Regex(String),
}

impl PeftAdapterConfig {
    /// Reads `dir/adapter_config.json`.
    ///
    /// # Errors
    /// [`FedError::Io`] naming the file if it cannot be read, [`FedError::InvalidConfig`] with
    /// field `adapter_config.json` naming the file if it does not parse (or lacks `r` /
    /// `lora_alpha`), and [`FedError::InvalidConfig`] naming the field for
    /// what fedvlm cannot represent: `peft_type` other than `LORA`, `bias` other than `none`,
    /// `use_dora`, `lora_bias`, a non-empty `rank_pattern` / `alpha_pattern` or
    /// `modules_to_save`, `r` = 0.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let path = dir.as_ref().join(PEFT_CONFIG_FILE);
        let text = std::fs::read(&path).map_err(|e| FedError::io(&path, e))?;
        let raw: RawConfig = serde_json::from_slice(&text).map_err(|e| {
            FedError::config(
                "adapter_config.json",
                format!("{} does not parse: {e}", path.display()),
            )
        })?;
        let unsupported = |field: &'static str, what: String| {
            Err(FedError::config(
                field,
                format!("{what} in {} is not supported", path.display()),
            ))
        };
        match raw.peft_type.as_deref() {
            Some("LORA") => {}
            other => return unsupported("peft_type", format!("{other:?} (only \"LORA\")")),
        }
        if let Some(bias) = raw.bias.filter(|b| b != "none") {
            return unsupported("bias", format!("bias {bias:?}"));
        }
        if raw.use_dora == Some(true) {
            return unsupported("use_dora", "DoRA".into());
        }
        if raw.lora_bias == Some(true) {
            return unsupported("lora_bias", "a LoRA bias".into());
        }
        if raw.rank_pattern.is_some_and(|p| !p.is_empty()) {
            return unsupported("rank_pattern", "a per-module rank".into());
        }
        if raw.alpha_pattern.is_some_and(|p| !p.is_empty()) {
            return unsupported("alpha_pattern", "a per-module alpha".into());
        }
        if raw
            .modules_to_save
            .is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty()))
        {
            return unsupported("modules_to_save", "modules_to_save".into());
        }
        if raw.r == 0 {
            return Err(FedError::config(
                "r",
                format!("must be at least 1 in {}", path.display()),
            ));
        }
        Ok(Self {
            r: raw.r,
            lora_alpha: raw.lora_alpha,
            lora_dropout: raw.lora_dropout,
            use_rslora: raw.use_rslora,
            target_modules: match raw.target_modules {
                Some(TargetModules::List(list)) => list,
                Some(TargetModules::Regex(regex)) => vec![regex],
                None => Vec::new(),
            },
            base_model_name_or_path: raw.base_model_name_or_path,
        })
    }

    /// The factor the update is multiplied by: `lora_alpha / r`, or `lora_alpha / sqrt(r)` with
    /// `use_rslora`.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// The [`LoraConfig`] whose adapters compute what peft computes with this file: rank `r`,
    /// dropout `lora_dropout` and an alpha giving the same [`PeftAdapterConfig::scaling`]
    /// (`lora_alpha`, or `lora_alpha * sqrt(r)` with `use_rslora`).
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig {
            rank: self.r,
            alpha: self.scaling() * self.r as f64,
            dropout: self.lora_dropout,
        }
    }
}

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
struct Entry {
    /// Module path of the parameter (`...q_proj.lora_a`), the key of a [`Payload`].
    path: String,
    /// PyTorch module name of its layer.
    module: String,
    /// Its shape.
    shape: Vec<usize>,
}

/// Every adapter matrix of `module`, by peft key, with its values.
fn adapter_entries<B: Backend, M: Module<B>>(
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
fn check_ranks(entries: &BTreeMap<String, Entry>, rank: usize, source: &str) -> Result<()> {
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

/// Writes every [`PersonalizedLora`](crate::PersonalizedLora) of `module` as a peft adapter
/// into `dir` (created if needed): `adapter_model.safetensors` with the keys of [`peft_key`] and
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

/// `adapter_config.json`: peft 0.21.2's full field set, sorted, with its defaults.
fn config_json(export: &PeftExport, targets: &[&str]) -> Value {
    let lora = &export.lora;
    // peft writes an integral alpha as an integer (`"lora_alpha": 8`)
    let alpha = if lora.alpha.fract() == 0.0 && lora.alpha.abs() < 1e15 {
        json!(lora.alpha as i64)
    } else {
        json!(lora.alpha)
    };
    let auto_mapping = export.auto_mapping.as_ref().map(
        |m| json!({"base_model_class": m.base_model_class, "parent_library": m.parent_library}),
    );
    let fields: BTreeMap<&str, Value> = BTreeMap::from([
        ("alora_invocation_tokens", Value::Null),
        ("alpha_pattern", json!({})),
        ("arrow_config", Value::Null),
        ("auto_mapping", json!(auto_mapping)),
        (
            "base_model_name_or_path",
            json!(export.base_model_name_or_path),
        ),
        ("bias", json!("none")),
        ("corda_config", Value::Null),
        ("ensure_weight_tying", json!(false)),
        ("eva_config", Value::Null),
        ("exclude_modules", Value::Null),
        ("fan_in_fan_out", json!(false)),
        ("inference_mode", json!(true)),
        ("init_lora_weights", json!(true)),
        ("kasa_config", Value::Null),
        ("layer_replication", Value::Null),
        ("layers_pattern", Value::Null),
        ("layers_to_transform", Value::Null),
        ("loftq_config", json!({})),
        ("lora_alpha", alpha),
        ("lora_bias", json!(false)),
        ("lora_dropout", json!(lora.dropout)),
        ("lora_ga_config", Value::Null),
        ("megatron_config", Value::Null),
        ("megatron_core", json!("megatron.core")),
        ("modules_to_save", Value::Null),
        ("monteclora_config", Value::Null),
        ("peft_type", json!("LORA")),
        ("peft_version", json!(PEFT_FORMAT_VERSION)),
        ("qalora_group_size", json!(16)),
        ("r", json!(lora.rank)),
        ("rank_pattern", json!({})),
        ("revision", Value::Null),
        ("target_modules", json!(targets)),
        ("target_parameters", Value::Null),
        ("task_type", json!(export.task_type)),
        ("trainable_token_indices", Value::Null),
        ("use_bdlora", Value::Null),
        ("use_dora", json!(false)),
        ("use_qalora", json!(false)),
        ("use_rslora", json!(false)),
        ("velora_config", Value::Null),
    ]);
    json!(fields)
}

/// Reads a peft adapter from `dir` into the [`PersonalizedLora`](crate::PersonalizedLora)s of
/// `module` and returns the updated copy (`module` is left untouched).
///
/// `key_prefix` is the one given to [`save_peft_adapter`] (see [`PeftExport::key_prefix`]) and
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

//! peft's `adapter_config.json`: what an export writes ([`PeftExport`]) and what a load
//! reads ([`PeftAdapterConfig`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{PEFT_CONFIG_FILE, PEFT_FORMAT_VERSION};
use crate::error::{FedError, Result};
use crate::lora::LoraConfig;
use crate::params::payload::WireDtype;

/// `auto_mapping` of `adapter_config.json`: the transformers class of the base model, which
/// peft's `AutoPeftModel` uses to rebuild it (`PeftModel.from_pretrained` does not need it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftAutoMapping {
    /// The model class, e.g. `Florence2ForConditionalGeneration`.
    pub base_model_class: String,
    /// Its Python module, e.g. `transformers.models.florence2.modeling_florence2`.
    pub parent_library: String,
}

/// What [`save_peft_adapter`](super::save_peft_adapter) needs besides the module.
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

/// `adapter_config.json`: peft 0.21.2's full field set, sorted, with its defaults.
pub(super) fn config_json(export: &PeftExport, targets: &[&str]) -> Value {
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

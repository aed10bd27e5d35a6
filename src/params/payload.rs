//! The payload: named tensors that cross the (simulated) network, and their wire format.
//!
//! On the wire a payload is a [safetensors](https://huggingface.co/docs/safetensors) file:
//! an 8-byte little-endian header length, a JSON header naming every tensor with its dtype,
//! shape and byte range, then the raw little-endian data. The header's `__metadata__` carries
//! `format = "fedvlm.payload"`, `version = "1"`, `round` and `num_examples`, so the bytes are
//! self-describing and any safetensors reader (Python included) can open them. Tensors travel in
//! `F32`, `F16` or `BF16` ([`WireDtype`]); they are held as `f32` in memory. Decoding validates
//! the format tag, version, dtypes and that every value is finite.

use std::collections::{BTreeMap, HashMap};

use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` metadata value of every payload.
pub const PAYLOAD_FORMAT: &str = "fedvlm.payload";
/// The wire-format version this crate writes and reads.
pub const PAYLOAD_VERSION: u32 = 1;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PayloadError {
    /// The bytes are not a valid safetensors file.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The metadata does not say `format = fedvlm.payload`.
    #[error("not a fedvlm payload (format = {0:?})")]
    WrongFormat(Option<String>),
    /// The payload was written by an incompatible version.
    #[error("unsupported payload version {found:?} (this build reads version {PAYLOAD_VERSION})")]
    UnsupportedVersion {
        /// The version found, if any.
        found: Option<String>,
    },
    /// A metadata field is missing or does not parse.
    #[error("invalid metadata `{key}`: {value:?}")]
    InvalidMetadata {
        /// The metadata key.
        key: &'static str,
        /// The value found, if any.
        value: Option<String>,
    },
    /// A tensor has a dtype other than F32, F16 or BF16.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The tensor's name.
        name: String,
        /// The dtype found.
        dtype: String,
    },
    /// A tensor's value count does not match its shape.
    #[error("tensor `{name}` has {found} values but its shape {shape:?} needs {expected}")]
    DataLength {
        /// The tensor's name.
        name: String,
        /// The declared shape.
        shape: Vec<usize>,
        /// Values the shape needs.
        expected: usize,
        /// Values present.
        found: usize,
    },
    /// A tensor holds NaN or infinity.
    #[error("tensor `{name}` holds a non-finite value (NaN or infinity)")]
    NonFinite {
        /// The tensor's name.
        name: String,
    },
    /// A tensor's shape differs from the expected one.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A tensor name is not expected here.
    #[error("unknown tensor `{0}`")]
    UnknownTensor(String),
    /// An expected tensor is absent.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),
    /// A received tensor is one the sharing rule does not share (a private adapter matrix or a
    /// frozen weight).
    #[error("tensor `{name}` is not shared under {rule}: refused")]
    NotShared {
        /// The tensor's name.
        name: String,
        /// The sharing rule in force.
        rule: String,
    },
}

/// The precision tensors travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireDtype {
    /// 32-bit float: lossless.
    #[default]
    F32,
    /// IEEE half precision: half the bytes, about 3 significant digits.
    F16,
    /// bfloat16: half the bytes, f32's range, about 2 significant digits.
    Bf16,
}

impl WireDtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            WireDtype::F32 => 4,
            WireDtype::F16 | WireDtype::Bf16 => 2,
        }
    }

    pub(crate) fn safetensors_dtype(self) -> Dtype {
        match self {
            WireDtype::F32 => Dtype::F32,
            WireDtype::F16 => Dtype::F16,
            WireDtype::Bf16 => Dtype::BF16,
        }
    }

    pub(crate) fn encode(self, values: &[f32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(values.len() * self.size());
        match self {
            WireDtype::F32 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
            WireDtype::F16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            WireDtype::Bf16 => values
                .iter()
                .for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        }
        out
    }
}

impl std::str::FromStr for WireDtype {
    type Err = crate::FedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(WireDtype::F32),
            "f16" => Ok(WireDtype::F16),
            "bf16" => Ok(WireDtype::Bf16),
            _ => Err(crate::FedError::config(
                "wire dtype",
                format!("unknown `{s}` (expected f32, f16 or bf16)"),
            )),
        }
    }
}

/// One tensor of a payload, row-major `f32` values with their shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorValues {
    /// The shape.
    pub shape: Vec<usize>,
    /// Row-major values; `values.len()` is the product of `shape`.
    pub values: Vec<f32>,
}

impl TensorValues {
    /// Builds a tensor, checking that the values fill the shape.
    pub fn new(name: &str, shape: Vec<usize>, values: Vec<f32>) -> Result<Self, PayloadError> {
        let expected = shape.iter().product::<usize>();
        if expected != values.len() {
            return Err(PayloadError::DataLength {
                name: name.to_string(),
                shape,
                expected,
                found: values.len(),
            });
        }
        Ok(Self { shape, values })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Named tensors plus the header every message carries: the unit that crosses the network in
/// both directions (global state down, client updates up).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// The round this payload belongs to.
    pub round: u64,
    /// Training examples behind an update (FedAvg's weight); 0 for a global payload.
    pub num_examples: u64,
    /// Tensors by module path, in sorted order.
    pub tensors: BTreeMap<String, TensorValues>,
}

impl Payload {
    /// Total number of values in all tensors.
    pub fn num_values(&self) -> usize {
        self.tensors.values().map(TensorValues::len).sum()
    }

    /// Tensor names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Checks that every value is finite.
    pub fn check_finite(&self) -> Result<(), PayloadError> {
        for (name, tensor) in &self.tensors {
            if tensor.values.iter().any(|v| !v.is_finite()) {
                return Err(PayloadError::NonFinite { name: name.clone() });
            }
        }
        Ok(())
    }

    /// Checks that this payload has exactly the names and shapes of `expected` and finite values:
    /// what the server requires of a client update.
    pub fn check_matches(&self, expected: &Payload) -> Result<(), PayloadError> {
        for name in self.tensors.keys() {
            if !expected.tensors.contains_key(name) {
                return Err(PayloadError::UnknownTensor(name.clone()));
            }
        }
        for (name, reference) in &expected.tensors {
            let tensor = self
                .tensors
                .get(name)
                .ok_or_else(|| PayloadError::MissingTensor(name.clone()))?;
            if tensor.shape != reference.shape {
                return Err(PayloadError::ShapeMismatch {
                    name: name.clone(),
                    expected: reference.shape.clone(),
                    found: tensor.shape.clone(),
                });
            }
        }
        self.check_finite()
    }

    /// Serialises to safetensors bytes in `dtype`.
    pub fn to_bytes(&self, dtype: WireDtype) -> Result<Vec<u8>, PayloadError> {
        let encoded: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.shape.clone(), dtype.encode(&t.values)))
            .collect();
        let views = encoded
            .iter()
            .map(|(name, shape, bytes)| {
                TensorView::new(dtype.safetensors_dtype(), shape.clone(), bytes)
                    .map(|view| (name.as_str(), view))
                    .map_err(|e| PayloadError::Malformed(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let metadata = HashMap::from([
            ("format".to_string(), PAYLOAD_FORMAT.to_string()),
            ("version".to_string(), PAYLOAD_VERSION.to_string()),
            ("round".to_string(), self.round.to_string()),
            ("num_examples".to_string(), self.num_examples.to_string()),
        ]);
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| PayloadError::Malformed(e.to_string()))
    }

    /// Parses and validates bytes written by [`Payload::to_bytes`] (or any safetensors writer
    /// that sets the same metadata).
    pub fn from_bytes(bytes: &[u8]) -> Result<Payload, PayloadError> {
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| PayloadError::Malformed(e.to_string()))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let format = metadata.get("format").cloned();
        if format.as_deref() != Some(PAYLOAD_FORMAT) {
            return Err(PayloadError::WrongFormat(format));
        }
        let version = metadata.get("version").cloned();
        if version.as_deref() != Some(PAYLOAD_VERSION.to_string().as_str()) {
            return Err(PayloadError::UnsupportedVersion { found: version });
        }
        let number = |key: &'static str| -> Result<u64, PayloadError> {
            let value = metadata.get(key).cloned();
            value
                .as_deref()
                .and_then(|v| v.parse().ok())
                .ok_or(PayloadError::InvalidMetadata { key, value })
        };
        let round = number("round")?;
        let num_examples = number("num_examples")?;

        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| PayloadError::Malformed(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in file.tensors() {
            let values = decode(&name, &view)?;
            let tensor = TensorValues::new(&name, view.shape().to_vec(), values)?;
            tensors.insert(name, tensor);
        }
        let payload = Payload {
            round,
            num_examples,
            tensors,
        };
        payload.check_finite()?;
        Ok(payload)
    }
}

/// The values of a safetensors tensor in f32, f16 or bf16, as f32.
pub(crate) fn decode(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>, PayloadError> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(PayloadError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

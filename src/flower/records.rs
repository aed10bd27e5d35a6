//! Flower's records in Rust: a [`RecordDict`] of named [`ArrayRecord`]s, [`ConfigRecord`]s and
//! [`MetricRecord`]s, with conversions to the protobuf records and to fedvlm's
//! [`Payload`].

use std::collections::BTreeMap;

use super::error::FlowerError;
use crate::federated::{Payload, TensorValues};

mod convert;

pub use convert::scalars_to_values;

/// One value of a config or metric record (the proto's `value` oneof).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `double`.
    Double(f64),
    /// `sint64` (Python `int`).
    Sint64(i64),
    /// `uint64`.
    Uint64(u64),
    /// `bool` (config only).
    Bool(bool),
    /// `string` (config only).
    String(String),
    /// `bytes` (config only).
    Bytes(Vec<u8>),
    /// A list of doubles.
    DoubleList(Vec<f64>),
    /// A list of signed integers.
    Sint64List(Vec<i64>),
    /// A list of unsigned integers.
    Uint64List(Vec<u64>),
    /// A list of booleans (config only).
    BoolList(Vec<bool>),
    /// A list of strings (config only).
    StringList(Vec<String>),
    /// A list of byte strings (config only).
    BytesList(Vec<Vec<u8>>),
}

impl Value {
    /// The value as an `f64` when it is a number (`Double`, `Sint64` or `Uint64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(v) => Some(*v),
            Value::Sint64(v) => Some(*v as f64),
            Value::Uint64(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The value as an `i64` when it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Sint64(v) => Some(*v),
            Value::Uint64(v) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The value as a string slice when it is a `String`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// The element type of a `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NpyDtype {
    /// `<f2`, numpy `float16`.
    F16,
    /// `<f4`, numpy `float32`.
    F32,
    /// `<f8`, numpy `float64`.
    F64,
}

impl NpyDtype {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            NpyDtype::F16 => 2,
            NpyDtype::F32 => 4,
            NpyDtype::F64 => 8,
        }
    }

    /// The `.npy` descr, e.g. `<f4`.
    pub fn descr(self) -> &'static str {
        match self {
            NpyDtype::F16 => "<f2",
            NpyDtype::F32 => "<f4",
            NpyDtype::F64 => "<f8",
        }
    }

    /// numpy's name, e.g. `float32`: the `dtype` of Flower's `Array` object.
    pub fn numpy_name(self) -> &'static str {
        match self {
            NpyDtype::F16 => "float16",
            NpyDtype::F32 => "float32",
            NpyDtype::F64 => "float64",
        }
    }
}

/// An n-dimensional float array; `f16` and `f64` arrays hold their values as `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// The element type on the wire.
    pub dtype: NpyDtype,
    /// The shape (`[]` for a 0-d scalar).
    pub shape: Vec<usize>,
    /// Row-major values; `values.len()` is the product of `shape`.
    pub values: Vec<f32>,
}

impl NdArray {
    /// An array, checking that `values` fill `shape`.
    pub fn new(dtype: NpyDtype, shape: Vec<usize>, values: Vec<f32>) -> Result<Self, FlowerError> {
        let array = Self {
            dtype,
            shape,
            values,
        };
        array.check("array")?;
        Ok(array)
    }

    /// Checks that the values fill the shape; `name` goes into the error.
    pub fn check(&self, name: &str) -> Result<(), FlowerError> {
        let count = self.shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
        if count != Some(self.values.len()) {
            return Err(FlowerError::Array {
                name: name.to_string(),
                detail: format!(
                    "shape {:?} does not hold {} values",
                    self.shape,
                    self.values.len()
                ),
            });
        }
        Ok(())
    }
}

/// Named arrays (Flower's `ArrayRecord`), in insertion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArrayRecord {
    /// `(name, array)` pairs.
    pub arrays: Vec<(String, NdArray)>,
}

impl ArrayRecord {
    /// The array called `name`.
    pub fn get(&self, name: &str) -> Option<&NdArray> {
        self.arrays.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Adds an array (builder style).
    pub fn with(mut self, name: impl Into<String>, array: NdArray) -> Self {
        self.arrays.push((name.into(), array));
        self
    }

    /// The arrays as a fedvlm payload (round and `num_examples` 0): names become tensor names.
    /// Checks shapes against values and rejects duplicate names; finiteness is not checked.
    pub fn to_payload(&self) -> Result<Payload, FlowerError> {
        let mut tensors = BTreeMap::new();
        for (name, array) in &self.arrays {
            array.check(name)?;
            let tensor = TensorValues::new(name, array.shape.clone(), array.values.clone())
                .map_err(|e| FlowerError::Array {
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
            if tensors.insert(name.clone(), tensor).is_some() {
                return Err(FlowerError::Array {
                    name: name.clone(),
                    detail: "appears twice in the record".into(),
                });
            }
        }
        Ok(Payload {
            round: 0,
            num_examples: 0,
            tensors,
        })
    }

    /// The payload's tensors (in name order), to travel as `dtype`.
    pub fn from_payload(payload: &Payload, dtype: NpyDtype) -> Self {
        let arrays = payload
            .tensors
            .iter()
            .map(|(name, t)| {
                let array = NdArray {
                    dtype,
                    shape: t.shape.clone(),
                    values: t.values.clone(),
                };
                (name.clone(), array)
            })
            .collect();
        Self { arrays }
    }
}

/// Flower's `ConfigRecord`: named values, in insertion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigRecord {
    /// `(key, value)` pairs.
    pub entries: Vec<(String, Value)>,
}

/// Flower's `MetricRecord`: named numbers (or lists of numbers), in insertion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricRecord {
    /// `(key, value)` pairs; only numeric values can be encoded.
    pub entries: Vec<(String, Value)>,
}

macro_rules! entry_methods {
    ($ty:ident) => {
        impl $ty {
            /// The value of `key`.
            pub fn get(&self, key: &str) -> Option<&Value> {
                self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }

            /// Adds an entry (builder style).
            pub fn with(mut self, key: impl Into<String>, value: Value) -> Self {
                self.entries.push((key.into(), value));
                self
            }
        }
    };
}
entry_methods!(ConfigRecord);
entry_methods!(MetricRecord);

/// One record of a [`RecordDict`].
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Arrays.
    Arrays(ArrayRecord),
    /// Configuration values.
    Config(ConfigRecord),
    /// Metrics.
    Metrics(MetricRecord),
}

/// Flower's `RecordDict`, the content of a message: named records in insertion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecordDict {
    /// `(name, record)` pairs.
    pub records: Vec<(String, Record)>,
}

impl RecordDict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record called `name`.
    pub fn get(&self, name: &str) -> Option<&Record> {
        self.records.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    /// The array record called `name`.
    pub fn arrays(&self, name: &str) -> Option<&ArrayRecord> {
        match self.get(name) {
            Some(Record::Arrays(r)) => Some(r),
            _ => None,
        }
    }

    /// The config record called `name`.
    pub fn config(&self, name: &str) -> Option<&ConfigRecord> {
        match self.get(name) {
            Some(Record::Config(r)) => Some(r),
            _ => None,
        }
    }

    /// The metric record called `name`.
    pub fn metrics(&self, name: &str) -> Option<&MetricRecord> {
        match self.get(name) {
            Some(Record::Metrics(r)) => Some(r),
            _ => None,
        }
    }

    /// Adds (or replaces) the record `name`, keeping its place if it existed.
    pub fn insert(&mut self, name: impl Into<String>, record: Record) {
        let name = name.into();
        match self.records.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = record,
            None => self.records.push((name, record)),
        }
    }

    /// Adds an array record (builder style).
    pub fn with_arrays(mut self, name: impl Into<String>, record: ArrayRecord) -> Self {
        self.insert(name, Record::Arrays(record));
        self
    }

    /// Adds a config record (builder style).
    pub fn with_config(mut self, name: impl Into<String>, record: ConfigRecord) -> Self {
        self.insert(name, Record::Config(record));
        self
    }

    /// Adds a metric record (builder style).
    pub fn with_metrics(mut self, name: impl Into<String>, record: MetricRecord) -> Self {
        self.insert(name, Record::Metrics(record));
        self
    }
}

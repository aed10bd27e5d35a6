//! Running a loaded model in half precision.
//!
//! burn tensors carry their float type at run time, so a module built on an f32 backend can
//! have its weights cast to f16 or bf16 ([`cast_floats`]) and then run on inputs of that type.
//! Florence-2 casts its pixel values to its weights' type itself, so a cast model takes the
//! same inputs as before. The frozen-prefix cache uses this to run the frozen layers in half
//! precision while the adapters train in f32
//! ([`crate::experiments::vqa::CacheConfig::precision`]).

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The float type a model's frozen weights and activations run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision (the default: exact).
    #[default]
    F32,
    /// IEEE half precision (10-bit mantissa; range up to 65,504).
    F16,
    /// bfloat16 (7-bit mantissa, f32's range).
    Bf16,
}

impl Precision {
    /// burn's float type.
    pub fn dtype(self) -> FloatDType {
        match self {
            Self::F32 => FloatDType::F32,
            Self::F16 => FloatDType::F16,
            Self::Bf16 => FloatDType::BF16,
        }
    }

    /// The name [`FromStr`] reads: `f32`, `f16` or `bf16`.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(format!("unknown precision `{other}` (f32, f16 or bf16)")),
        }
    }
}

/// `module` with every float parameter cast to `precision` (parameter ids, trainability and
/// integer or boolean tensors unchanged). Casting to the type a tensor already has is free.
pub fn cast_floats<B: Backend, M: Module<B>>(module: M, precision: Precision) -> M {
    module.map(&mut CastFloats(precision.dtype()))
}

struct CastFloats(FloatDType);

impl<B: Backend> ModuleMapper<B> for CastFloats {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let dtype = self.0;
        param.map(|tensor| tensor.cast(dtype))
    }
}

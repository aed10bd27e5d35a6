//! Stacking the members' tensors along a client axis, and FedProx's pull on stacked tensors.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::error::{FedError, Result};
use crate::params::Payload;

/// Stacks one tensor per member into `[C, rows, cols]`. 1-D tensors (`[cols]`, a bias) become
/// `[C, 1, cols]`.
pub fn stack_params<B: Backend, const D: usize>(values: Vec<Tensor<B, D>>) -> Result<Tensor<B, 3>> {
    let as_3d: Vec<Tensor<B, 3>> = values
        .into_iter()
        .map(|t| {
            let dims = t.dims();
            match D {
                1 => Ok(t.reshape([1, 1, dims[0]])),
                2 => Ok(t.reshape([1, dims[0], dims[1]])),
                _ => Err(FedError::Task(format!(
                    "cohort training stacks 1-D and 2-D tensors, not {D}-D"
                ))),
            }
        })
        .collect::<Result<_>>()?;
    if as_3d.is_empty() {
        return Err(FedError::Task("a cohort without members".into()));
    }
    Ok(Tensor::cat(as_3d, 0))
}

/// Member `i` of a stacked tensor, back in its own shape `dims` (1-D or 2-D).
pub fn unstack_param<B: Backend, const D: usize>(
    stacked: &Tensor<B, 3>,
    i: usize,
    dims: [usize; D],
) -> Tensor<B, D> {
    stacked.clone().narrow(0, i, 1).reshape(dims)
}

/// The round's global tensors that FedProx pulls each member towards, `mu (w - w_global)`
/// added to the gradient of every trainable tensor the global payload names.
#[derive(Debug, Clone)]
pub struct ProxTargets<B: Backend> {
    mu: f64,
    tensors: BTreeMap<String, Tensor<B, 3>>,
}

impl<B: Backend> ProxTargets<B> {
    /// The global payload's tensors as `[1, rows, cols]` (1-D ones as `[1, 1, cols]`).
    pub fn new(global: &Payload, mu: f64, device: &B::Device) -> Self {
        let tensors = global
            .tensors
            .iter()
            .map(|(name, t)| {
                let (rows, cols) = match t.shape.as_slice() {
                    [rows, cols] => (*rows, *cols),
                    _ => (1, t.values.len()),
                };
                let data = TensorData::new(t.values.clone(), [1, rows, cols]);
                (name.clone(), Tensor::from_data(data, device))
            })
            .collect();
        Self { mu, tensors }
    }

    /// `grad + mu (w - w_global)` when the payload names `name` (the gradient of the proximal
    /// term `mu/2 ||w - w_global||^2`), `grad` otherwise. `w` and `grad` are `[n, rows, cols]`.
    pub fn pull(&self, name: &str, w: Tensor<B, 3>, grad: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        let Some(global) = self.tensors.get(name) else {
            return Ok(grad);
        };
        let [_, rows, cols] = w.dims();
        let [_, g_rows, g_cols] = global.dims();
        if rows * cols != g_rows * g_cols {
            return Err(FedError::Task(format!(
                "FedProx: `{name}` is {rows}x{cols} but the global tensor is {g_rows}x{g_cols}"
            )));
        }
        let global = global.clone().reshape([1, rows, cols]);
        Ok(grad + (w - global).mul_scalar(self.mu))
    }
}

//! FedProx's proximal term, `mu/2 * ||w - w_global||^2`, as a loss term users add to their own.

use std::collections::BTreeMap;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;

use crate::params::path::PathTracker;
use crate::params::payload::Payload;

/// The global shared tensors of the round, on the device, that the proximal term pulls towards.
#[derive(Debug, Clone)]
pub struct ProxAnchor<B: Backend> {
    tensors: BTreeMap<String, Tensor<B, 1>>,
}

impl<B: Backend> ProxAnchor<B> {
    /// Uploads the global payload (flattened) to `device`.
    pub fn new(global: &Payload, device: &B::Device) -> Self {
        let tensors = global
            .tensors
            .iter()
            .map(|(name, t)| {
                let data = TensorData::new(t.values.clone(), [t.values.len()]);
                (name.clone(), Tensor::from_data(data, device))
            })
            .collect();
        Self { tensors }
    }

    /// Number of anchored tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor is anchored.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// `mu/2 * sum ||w - w_global||^2` over the model's *trainable* parameters that the anchor names
/// (the shared trainable tensors), as a one-element tensor that carries gradients
/// (`d/dw = mu * (w - w_global)`). Returns zero when nothing matches.
pub fn proximal_term<B: Backend, M: Module<B>>(
    model: &M,
    anchor: &ProxAnchor<B>,
    mu: f64,
) -> Tensor<B, 1> {
    let mut visitor = ProxVisitor {
        path: PathTracker::default(),
        anchor,
        sum: None,
    };
    model.visit(&mut visitor);
    match visitor.sum {
        Some(sum) => sum.mul_scalar(mu / 2.0),
        None => {
            let device = anchor
                .tensors
                .values()
                .next()
                .map(|t| t.device())
                .unwrap_or_default();
            Tensor::zeros([1], &device)
        }
    }
}

struct ProxVisitor<'a, B: Backend> {
    path: PathTracker,
    anchor: &'a ProxAnchor<B>,
    sum: Option<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for ProxVisitor<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.is_require_grad() {
            return;
        }
        let Some(global) = self.anchor.tensors.get(&self.path.path()) else {
            return;
        };
        let w: Tensor<B, 1> = param.val().flatten(0, D - 1);
        let term = (w - global.clone()).powi_scalar(2).sum();
        self.sum = Some(match self.sum.take() {
            Some(sum) => sum + term,
            None => term,
        });
    }
}

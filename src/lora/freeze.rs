//! Applying a [`Sharing`] rule's trainability to every adapter of a model.

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

use super::layer::set_trainable;
use super::{ShareSpec, Sharing};
use crate::error::{FedError, Result};
use crate::params::path::{PathTracker, TensorRole};

/// Sets `require_grad` of every adapter matrix of `module` as `sharing` says (FFA-LoRA freezes
/// `A`); base weights stay frozen. Other parameters of the model are left as they are.
pub fn apply_sharing<B: Backend, M: Module<B>>(module: M, sharing: Sharing) -> M {
    let mut mapper = TrainabilityMapper {
        path: PathTracker::default(),
        rule: Box::new(move |role| match role {
            TensorRole::Adapter(matrix) => Some(sharing.trains(matrix)),
            TensorRole::Other => None,
        }),
    };
    module.map(&mut mapper)
}

/// Freezes every parameter of `module` except the adapter matrices (whose trainability is then
/// set by [`apply_sharing`]). Use it on a pre-trained backbone after inserting adapters.
pub fn freeze_all<B: Backend, M: Module<B>>(module: M, sharing: Sharing) -> M {
    let mut mapper = TrainabilityMapper {
        path: PathTracker::default(),
        rule: Box::new(move |role| match role {
            TensorRole::Adapter(matrix) => Some(sharing.trains(matrix)),
            TensorRole::Other => Some(false),
        }),
    };
    module.map(&mut mapper)
}

struct TrainabilityMapper {
    path: PathTracker,
    rule: Box<dyn Fn(TensorRole) -> Option<bool>>,
}

impl<B: Backend> ModuleMapper<B> for TrainabilityMapper {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        match (self.rule)(self.path.role()) {
            Some(trainable) => set_trainable(param, trainable),
            None => param,
        }
    }
}

/// Checks that every trainable parameter of `module` is part of the federated state `spec`
/// describes: an adapter matrix or a shared extra (`ShareSpec::also_share`). A parameter the
/// user left trainable elsewhere (a base weight that `freeze_all` would have frozen) would be
/// trained silently, never shared and never checkpointed: that is an error.
pub fn check_trainable<B: Backend, M: Module<B>>(module: &M, spec: &ShareSpec) -> Result<()> {
    struct Stray<'a> {
        path: PathTracker,
        spec: &'a ShareSpec,
        found: Vec<String>,
    }
    impl<B: Backend> ModuleVisitor<B> for Stray<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path = self.path.path();
            if param.is_require_grad() && !self.spec.is_client_state(&path, self.path.role()) {
                self.found.push(path);
            }
        }
    }
    let mut stray = Stray {
        path: PathTracker::default(),
        spec,
        found: Vec::new(),
    };
    module.visit(&mut stray);
    match stray.found.first() {
        None => Ok(()),
        Some(first) => Err(FedError::config(
            "models",
            format!(
                "{} parameter(s) outside the adapters are trainable but not shared, e.g. `{first}`: \
                 freeze them (lora::freeze_all) or share them (ShareSpec::also_share)",
                stray.found.len()
            ),
        )),
    }
}

//! What travels under a sharing rule: [`ShareSpec`] selects a model's shared tensors,
//! [`collect_shared`] reads them out for the server and [`apply_payload`] writes a received
//! payload back, refusing anything the rule keeps private or frozen.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::Sharing;
use crate::params::path::{PathTracker, TensorRole};
use crate::params::payload::{Payload, PayloadError};
use crate::params::state::{apply_tensors, collect_where};

/// Which tensors of a model travel: the adapters' matrices as the [`Sharing`] rule says, plus
/// any other parameter whose path starts with one of `also_shared` (for example a new
/// classification head that every client trains and averages).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShareSpec {
    /// The adapter sharing rule.
    pub sharing: Sharing,
    /// Path prefixes (`"head"`, `"classifier.3"`) of non-adapter parameters that are shared.
    pub also_shared: Vec<String>,
}

impl ShareSpec {
    /// Shares only what `sharing` says of the adapters.
    pub fn new(sharing: Sharing) -> Self {
        Self {
            sharing,
            also_shared: Vec::new(),
        }
    }

    /// Adds a path prefix of non-adapter parameters to share.
    pub fn also_share(mut self, prefix: impl Into<String>) -> Self {
        self.also_shared.push(prefix.into());
        self
    }

    /// Whether the parameter at `path` with `role` travels.
    pub fn is_shared(&self, path: &str, role: TensorRole) -> bool {
        match role {
            TensorRole::Adapter(matrix) => self.sharing.shares(matrix),
            TensorRole::Other => self.matches_extra(path),
        }
    }

    /// Whether the parameter is part of a client's federated state at all: every adapter matrix
    /// and every shared extra parameter. What a checkpoint of a client saves.
    pub fn is_client_state(&self, path: &str, role: TensorRole) -> bool {
        matches!(role, TensorRole::Adapter(_)) || self.matches_extra(path)
    }

    fn matches_extra(&self, path: &str) -> bool {
        self.also_shared.iter().any(|prefix| {
            path == prefix
                || (path.starts_with(prefix.as_str())
                    && path.as_bytes().get(prefix.len()) == Some(&b'.'))
        })
    }
}

/// Collects the tensors `spec` shares from `module` (keyed by module path) into a payload.
/// Private tensors never enter it.
pub fn collect_shared<B: Backend, M: Module<B>>(module: &M, spec: &ShareSpec) -> Payload {
    collect_where(module, |path, role| spec.is_shared(path, role))
}

/// Collects every adapter matrix and every shared extra parameter: a client's whole federated
/// state, shared and private (used by checkpoints and a Flower node's `--state-dir`).
pub fn collect_client_state<B: Backend, M: Module<B>>(module: &M, spec: &ShareSpec) -> Payload {
    collect_where(module, |path, role| spec.is_client_state(path, role))
}

/// Receives a payload: returns a copy of `module` with the payload's tensors written at their
/// paths, after checking that every one of them is a tensor `spec` shares.
///
/// The sharing rule is enforced on receipt: a payload naming a tensor the rule keeps private
/// (`lora_a` under pLoRA or FFA-LoRA, `lora_b` under FedSA-LoRA) or a weight outside the
/// adapters and `also_shared` (a frozen base weight) is refused with
/// [`PayloadError::NotShared`], and so is an unknown name, a wrong shape or a non-finite value;
/// nothing is written then. Parameter ids and `require_grad` flags are kept, so trainable
/// tensors stay trainable and an optimiser's state stays attached. To restore a client's own
/// saved state (private tensors included) use [`crate::params::apply_tensors`].
pub fn apply_payload<B: Backend, M: Module<B>>(
    module: &M,
    payload: &Payload,
    spec: &ShareSpec,
) -> Result<M, PayloadError> {
    let roles = parameter_roles(module);
    for name in payload.tensors.keys() {
        let role = roles
            .get(name)
            .copied()
            .ok_or_else(|| PayloadError::UnknownTensor(name.clone()))?;
        if !spec.is_shared(name, role) {
            return Err(PayloadError::NotShared {
                name: name.clone(),
                rule: spec.sharing.name().to_string(),
            });
        }
    }
    apply_tensors(module, payload)
}

/// Under FFA-LoRA, every adapter's frozen `A` of `reference` (by convention the first client's
/// model): the one `A` all clients must hold, since FFA-LoRA's `A` never trains and never
/// travels, and the server averages `B`s that only make sense over one common `A`. `None` under
/// the other rules (FedAvg-LoRA's clients get the global `A` with the first payload).
pub fn common_frozen_a<B: Backend, M: Module<B>>(
    spec: &ShareSpec,
    reference: &M,
) -> Option<Payload> {
    (spec.sharing == Sharing::FfaLora).then(|| {
        collect_where(reference, |_, role| {
            role == TensorRole::Adapter(crate::params::AdapterMatrix::A)
        })
    })
}

/// The role of every float parameter of `module`, by path.
fn parameter_roles<B: Backend, M: Module<B>>(
    module: &M,
) -> std::collections::BTreeMap<String, TensorRole> {
    struct Roles {
        path: PathTracker,
        roles: std::collections::BTreeMap<String, TensorRole>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Roles {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, _param: &burn::module::Param<Tensor<B, D>>) {
            self.roles.insert(self.path.path(), self.path.role());
        }
    }
    let mut roles = Roles {
        path: PathTracker::default(),
        roles: Default::default(),
    };
    module.visit(&mut roles);
    roles.roles
}

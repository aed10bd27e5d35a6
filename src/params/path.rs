//! Module paths: the names under which tensors travel (`layers.3.q_proj.lora_b`), and what
//! a parameter at a path is ([`TensorRole`]).

use serde::{Deserialize, Serialize};

/// One of the two low-rank matrices of a [`crate::PersonalizedLora`] layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AdapterMatrix {
    /// The down-projection `A` (`[rank, in]`), initialised at random.
    A,
    /// The up-projection `B` (`[out, rank]`), initialised at zero.
    B,
}

/// The container type burn's module derive reports for [`crate::PersonalizedLora`].
const ADAPTER_CONTAINER: &str = "Struct:PersonalizedLora";

/// What a parameter is, as far as federation is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// `lora_a` or `lora_b` of a [`crate::PersonalizedLora`].
    Adapter(AdapterMatrix),
    /// Anything else (base weights, heads, norms...).
    Other,
}

impl TensorRole {
    /// The adapter matrix this role names, if any.
    pub fn adapter(self) -> Option<AdapterMatrix> {
        match self {
            TensorRole::Adapter(m) => Some(m),
            TensorRole::Other => None,
        }
    }
}

/// Follows burn's `enter_module` / `exit_module` calls to know the current parameter's path and
/// whether it belongs to an adapter. Shared by every visitor and mapper of the crate.
///
/// Enum variant names are left out of the path (as burn-store does), so a layer held in an
/// enum such as `enum Dense { Plain(Linear), Lora(PersonalizedLora) }` under field `fc` has the
/// paths `fc.weight` and `fc.lora_b` whichever variant it is.
#[derive(Debug, Default, Clone)]
pub struct PathTracker {
    names: Vec<String>,
    containers: Vec<String>,
    in_path: Vec<bool>,
}

impl PathTracker {
    /// Called on `enter_module`.
    pub fn enter(&mut self, name: &str, container_type: &str) {
        let in_path = !container_type.starts_with("Enum:");
        if in_path {
            self.names.push(name.to_string());
        }
        self.in_path.push(in_path);
        self.containers.push(container_type.to_string());
    }

    /// Called on `exit_module`.
    pub fn exit(&mut self) {
        if self.in_path.pop().unwrap_or(true) {
            self.names.pop();
        }
        self.containers.pop();
    }

    /// The dotted path of the current parameter.
    pub fn path(&self) -> String {
        self.names.join(".")
    }

    /// The role of the current parameter.
    pub fn role(&self) -> TensorRole {
        let in_adapter = self.containers.last().map(String::as_str) == Some(ADAPTER_CONTAINER);
        match (in_adapter, self.names.last().map(String::as_str)) {
            (true, Some("lora_a")) => TensorRole::Adapter(AdapterMatrix::A),
            (true, Some("lora_b")) => TensorRole::Adapter(AdapterMatrix::B),
            _ => TensorRole::Other,
        }
    }
}

//! Named tensors read out of any burn module ([`collect_where`]) and written back into one
//! ([`apply_tensors`]), by module path. No sharing rule here: [`crate::lora::apply_payload`]
//! is the receiving side that enforces one.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::TensorData;

use super::path::{PathTracker, TensorRole};
use super::payload::{Payload, PayloadError, TensorValues};

/// Collects the float parameters for which `keep(path, role)` holds.
pub fn collect_where<B: Backend, M: Module<B>>(
    module: &M,
    keep: impl Fn(&str, TensorRole) -> bool,
) -> Payload {
    let mut collector = Collector {
        path: PathTracker::default(),
        keep,
        tensors: BTreeMap::new(),
    };
    module.visit(&mut collector);
    Payload {
        round: 0,
        num_examples: 0,
        tensors: collector.tensors,
    }
}

struct Collector<F> {
    path: PathTracker,
    keep: F,
    tensors: BTreeMap<String, TensorValues>,
}

impl<B: Backend, F: Fn(&str, TensorRole) -> bool> ModuleVisitor<B> for Collector<F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let path = self.path.path();
        if !(self.keep)(&path, self.path.role()) {
            return;
        }
        let tensor = param.val();
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .unwrap_or_default();
        self.tensors.insert(path, TensorValues { shape, values });
    }
}

/// Shapes of every float parameter of `module`, by path.
pub fn parameter_shapes<B: Backend, M: Module<B>>(module: &M) -> BTreeMap<String, Vec<usize>> {
    struct Shapes {
        path: PathTracker,
        shapes: BTreeMap<String, Vec<usize>>,
    }
    impl<B: Backend> ModuleVisitor<B> for Shapes {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.shapes
                .insert(self.path.path(), param.lazy_shape().to_vec());
        }
    }
    let mut shapes = Shapes {
        path: PathTracker::default(),
        shapes: BTreeMap::new(),
    };
    module.visit(&mut shapes);
    shapes.shapes
}

/// Returns a copy of `module` with the payload's tensors written at their paths, whatever
/// they are (private adapter matrices and frozen weights included: use it to restore a
/// client's own saved state, not to receive a server's payload); `module`
/// itself is left untouched (copies share the buffers of every tensor not replaced, so this is
/// cheap).
///
/// Every replaced parameter keeps its [`burn::module::ParamId`] and its `require_grad` flag, so
/// an optimiser kept across rounds still finds its state (Adam's moments) under the same ids,
/// and trainable tensors stay trainable. The payload is checked first: every name must exist in
/// the module with the same shape and every value must be finite, otherwise nothing is written.
pub fn apply_tensors<B: Backend, M: Module<B>>(
    module: &M,
    payload: &Payload,
) -> Result<M, PayloadError> {
    payload.check_finite()?;
    let shapes = parameter_shapes::<B, M>(module);
    for (name, tensor) in &payload.tensors {
        let shape = shapes
            .get(name)
            .ok_or_else(|| PayloadError::UnknownTensor(name.clone()))?;
        if *shape != tensor.shape {
            return Err(PayloadError::ShapeMismatch {
                name: name.clone(),
                expected: shape.clone(),
                found: tensor.shape.clone(),
            });
        }
    }
    let mut writer = Writer {
        path: PathTracker::default(),
        payload,
        written: BTreeSet::new(),
    };
    let module = module.clone().map(&mut writer);
    debug_assert_eq!(writer.written.len(), payload.tensors.len());
    Ok(module)
}

struct Writer<'a> {
    path: PathTracker,
    payload: &'a Payload,
    written: BTreeSet<String>,
}

impl<B: Backend> ModuleMapper<B> for Writer<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.path();
        let Some(tensor) = self.payload.tensors.get(&path) else {
            return param;
        };
        self.written.insert(path);
        let require_grad = param.is_require_grad();
        let data = TensorData::new(tensor.values.clone(), tensor.shape.clone());
        param.map(|old| {
            let device = old.device();
            Tensor::from_data(data, &device).set_require_grad(require_grad)
        })
    }
}

//! A client optimiser's state as named tensors, keyed by parameter path instead of burn's
//! per-process [`ParamId`]s, so a checkpoint restores it into a rebuilt model.
//!
//! Per trainable parameter at `path`: AdamW keeps `path#moment_1`, `path#moment_2` (the
//! parameter's shape) and `path#step` (`[1]`, its step count); SGD with momentum keeps
//! `path#velocity`. The step count travels as an `f32`, exact below 2^24 steps (a client of
//! the paper's CIFAR run takes about 21,000 in 150 rounds); saving refuses more.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::momentum::MomentumState;
use burn::optim::record::AdaptorRecord;
use burn::optim::{AdamW, AdamWState, AdaptiveMomentumState, Optimizer, Sgd, SgdState};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, Record};
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;

use super::optimizer::{LocalOptimizer, OptimizerConfig};
use crate::error::{FedError, Result};
use crate::params::path::PathTracker;
use crate::params::{Payload, TensorValues};

/// Largest step count an `f32` holds exactly.
const MAX_STEPS: usize = 1 << 24;

type Inner<B> = <B as AutodiffBackend>::InnerBackend;
/// burn's record of an adapted optimiser (a map from parameter id to state).
type RecordOf<O, B, M> = <OptimizerAdaptor<O, M, B> as Optimizer<M, B>>::Record;

/// The state of `optimizer` for the parameters of `model` (the client's model, whose
/// parameter ids the optimiser knows), as named tensors.
pub(crate) fn save_state<B: AutodiffBackend, M: AutodiffModule<B>>(
    optimizer: &LocalOptimizer<B, M>,
    model: &M::InnerModule,
) -> Result<Payload> {
    let mut saver = Saver::<B, M> {
        tracker: PathTracker::default(),
        adamw: None,
        sgd: None,
        payload: Payload::default(),
        error: None,
    };
    match optimizer {
        LocalOptimizer::AdamW(optim) => saver.adamw = Some(optim.to_record()),
        LocalOptimizer::Sgd(optim) => saver.sgd = Some(optim.to_record()),
    }
    model.visit(&mut saver);
    match saver.error {
        Some(error) => Err(error),
        None => Ok(saver.payload),
    }
}

/// An optimiser configured by `config` holding `state` (from [`save_state`]) for the
/// parameters of `model` found at the same paths. Every tensor of `state` must name a
/// parameter of `model` with the same shape.
pub(crate) fn load_state<B: AutodiffBackend, M: AutodiffModule<B>>(
    config: &OptimizerConfig,
    state: &Payload,
    model: &M::InnerModule,
) -> Result<LocalOptimizer<B, M>> {
    let mut loader = Loader::<B, M> {
        tracker: PathTracker::default(),
        state,
        adamw: matches!(config, OptimizerConfig::AdamW { .. }).then(Default::default),
        sgd: matches!(config, OptimizerConfig::Sgd { .. }).then(Default::default),
        used: 0,
        error: None,
    };
    model.visit(&mut loader);
    if let Some(error) = loader.error {
        return Err(error);
    }
    if loader.used != state.tensors.len() {
        let known: Vec<&str> = state.names().collect();
        return Err(invalid(format!(
            "{} of its {} tensors name no parameter of the model ({known:?})",
            state.tensors.len() - loader.used,
            state.tensors.len()
        )));
    }
    Ok(
        match (LocalOptimizer::new(config), loader.adamw, loader.sgd) {
            (LocalOptimizer::AdamW(optim), Some(record), _) => {
                LocalOptimizer::AdamW(optim.load_record(record))
            }
            (LocalOptimizer::Sgd(optim), _, Some(record)) => {
                LocalOptimizer::Sgd(optim.load_record(record))
            }
            (optim, _, _) => optim,
        },
    )
}

fn invalid(message: String) -> FedError {
    FedError::config("optimizer state", message)
}

fn values<B: Backend, const D: usize>(name: &str, tensor: Tensor<B, D>) -> Result<TensorValues> {
    let shape = tensor.dims().to_vec();
    let values = tensor
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| invalid(format!("{name}: {e:?}")))?;
    TensorValues::new(name, shape, values).map_err(|e| invalid(e.to_string()))
}

struct Saver<B: AutodiffBackend, M: AutodiffModule<B>> {
    tracker: PathTracker,
    adamw: Option<RecordOf<AdamW, B, M>>,
    sgd: Option<RecordOf<Sgd<Inner<B>>, B, M>>,
    payload: Payload,
    error: Option<FedError>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Saver<B, M> {
    fn put<const D: usize>(&mut self, name: String, tensor: Tensor<Inner<B>, D>) {
        match values(&name, tensor) {
            Ok(v) => {
                self.payload.tensors.insert(name, v);
            }
            Err(e) => self.error = self.error.take().or(Some(e)),
        }
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> ModuleVisitor<Inner<B>> for Saver<B, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Inner<B>, D>>) {
        let path = self.tracker.path();
        if let Some(record) = self.adamw.as_ref().and_then(|r| r.get(&param.id)) {
            let state: AdamWState<Inner<B>, D> = record.clone().into_state();
            let momentum = state.momentum;
            if momentum.time >= MAX_STEPS {
                self.error = Some(invalid(format!(
                    "{path} has taken {} steps, more than a checkpoint records ({MAX_STEPS})",
                    momentum.time
                )));
                return;
            }
            let device = momentum.moment_1.device();
            let step = Tensor::<Inner<B>, 1>::from_data(
                TensorData::new(vec![momentum.time as f32], [1]),
                &device,
            );
            self.put(format!("{path}#step"), step);
            self.put(format!("{path}#moment_1"), momentum.moment_1);
            self.put(format!("{path}#moment_2"), momentum.moment_2);
        }
        if let Some(record) = self.sgd.as_ref().and_then(|r| r.get(&param.id)) {
            let state: SgdState<Inner<B>, D> = record.clone().into_state();
            if let Some(momentum) = state.momentum {
                let item = Record::<Inner<B>>::into_item::<FullPrecisionSettings>(momentum);
                let velocity = <Tensor<Inner<B>, D> as Record<Inner<B>>>::from_item::<
                    FullPrecisionSettings,
                >(item.velocity, &param.device());
                self.put(format!("{path}#velocity"), velocity);
            }
        }
    }
}

struct Loader<'a, B: AutodiffBackend, M: AutodiffModule<B>> {
    tracker: PathTracker,
    state: &'a Payload,
    adamw: Option<RecordOf<AdamW, B, M>>,
    sgd: Option<RecordOf<Sgd<Inner<B>>, B, M>>,
    used: usize,
    error: Option<FedError>,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Loader<'_, B, M> {
    /// The tensor `name`, checked against the parameter's shape `dims`.
    fn tensor<const D: usize>(
        &mut self,
        name: &str,
        dims: [usize; D],
        device: &burn::tensor::Device<Inner<B>>,
    ) -> Option<Tensor<Inner<B>, D>> {
        let values = self.state.tensors.get(name)?;
        if values.shape != dims {
            self.error = Some(invalid(format!(
                "{name} has shape {:?}, the parameter {dims:?}",
                values.shape
            )));
            return None;
        }
        self.used += 1;
        Some(Tensor::from_data(
            TensorData::new(values.values.clone(), dims),
            device,
        ))
    }
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> ModuleVisitor<Inner<B>> for Loader<'_, B, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.tracker.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.tracker.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Inner<B>, D>>) {
        if self.error.is_some() {
            return;
        }
        let path = self.tracker.path();
        let dims = param.dims();
        let device = param.device();
        if self.adamw.is_some() {
            let step = self.tensor::<1>(&format!("{path}#step"), [1], &device);
            let m1 = self.tensor(&format!("{path}#moment_1"), dims, &device);
            let m2 = self.tensor(&format!("{path}#moment_2"), dims, &device);
            match (step, m1, m2) {
                (Some(step), Some(moment_1), Some(moment_2)) => {
                    let time = step.into_scalar().elem::<f32>();
                    if !(time.is_finite() && time >= 0.0 && time.fract() == 0.0) {
                        self.error = Some(invalid(format!("{path}#step is {time}")));
                        return;
                    }
                    let momentum = AdaptiveMomentumState::new(time as usize, moment_1, moment_2);
                    let record = AdaptorRecord::from_state(AdamWState::new(momentum));
                    if let Some(records) = self.adamw.as_mut() {
                        records.insert(param.id, record);
                    }
                }
                (None, None, None) => {}
                _ if self.error.is_some() => {}
                _ => {
                    self.error = Some(invalid(format!(
                        "{path} lacks one of #step, #moment_1, #moment_2"
                    )))
                }
            }
        }
        if self.sgd.is_some()
            && let Some(velocity) = self.tensor(&format!("{path}#velocity"), dims, &device)
        {
            let record =
                AdaptorRecord::from_state(SgdState::new(Some(MomentumState::new(velocity))));
            if let Some(records) = self.sgd.as_mut() {
                records.insert(param.id, record);
            }
        }
    }
}

//! A fedvlm client behind a Flower node: Flower's record keys on one side, the
//! [`ClientRuntime`] (the same one the in-process simulation runs) on the other.
//!
//! The contract with the ServerApp (and with Python ClientApps in a mixed federation):
//! * `train`: reads `arrays` (tensor names = fedvlm payload names) and `config` (`server-round`,
//!   and `local-epochs`, `lr`, `proximal-mu`, `clipping_norm` when present); replies `arrays`
//!   (the shared tensors after local training, same names and shapes) and `metrics` with
//!   `num-examples` and `train-loss`.
//! * `evaluate`: reads `arrays` (and `config`); replies `metrics` with `num-examples`,
//!   `accuracy` and `loss` of the personalised model (private tensors + received ones) on the
//!   client's own test split.
//! * `query`: replies `metrics` with `num-examples`, `num-test-examples` and `partition-id`.
//!
//! Every instruction is checked before anything changes: unknown or missing tensor names,
//! wrong shapes, non-finite values and tensors the sharing rule keeps private (`lora_a` under
//! pLoRA) get an error reply and leave the client as it was.

use burn::tensor::backend::AutodiffBackend;
use sha2::{Digest, Sha256};

use super::node::{Instruction, MessageStats, NodeHandler, ReplyError};
use super::records::{ArrayRecord, ConfigRecord, MetricRecord, NpyDtype, RecordDict, Value};
use crate::error::{FedError, Result};
use crate::federated::{
    ClientConfig, ClientRuntime, ClientStateDir, FederatedTask, Payload, Split,
};
use crate::strategy::clip_update;

/// The record names stock Flower strategies use.
pub mod keys {
    /// The `ArrayRecord` of an instruction and of a train reply.
    pub const ARRAYS: &str = "arrays";
    /// The `ConfigRecord` of an instruction.
    pub const CONFIG: &str = "config";
    /// The `MetricRecord` of a reply.
    pub const METRICS: &str = "metrics";
    /// Config: the 1-based round (always sent by stock strategies).
    pub const SERVER_ROUND: &str = "server-round";
    /// Config: FedProx's mu (sent by Flower's `FedProx`).
    pub const PROXIMAL_MU: &str = "proximal-mu";
    /// Config: local epochs for this round.
    pub const LOCAL_EPOCHS: &str = "local-epochs";
    /// Config: local learning rate for this round.
    pub const LR: &str = "lr";
    /// Config: clip the update's L2 norm (relative to the received arrays) before sending;
    /// sent by Flower's `DifferentialPrivacyClientSideFixedClipping`.
    pub const CLIPPING_NORM: &str = "clipping_norm";
    /// Metric: examples behind a reply (FedAvg's weight).
    pub const NUM_EXAMPLES: &str = "num-examples";
    /// Metric: mean training loss of the round.
    pub const TRAIN_LOSS: &str = "train-loss";
    /// Metric: test accuracy of the personalised model.
    pub const ACCURACY: &str = "accuracy";
    /// Metric: test loss of the personalised model.
    pub const LOSS: &str = "loss";
}

/// What a node did with one instruction, for logs and measurements.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeReport {
    /// `train`, `evaluate` or `query`.
    pub message_type: String,
    /// The instruction's `server-round` (0 when absent).
    pub round: u64,
    /// The client (partition) index.
    pub partition: usize,
    /// The error replied, if the instruction was refused.
    pub error: Option<String>,
    /// Examples behind the reply.
    pub num_examples: Option<usize>,
    /// Train replies: mean training loss.
    pub train_loss: Option<f64>,
    /// Evaluate replies: test accuracy.
    pub accuracy: Option<f64>,
    /// Evaluate replies: test loss.
    pub loss: Option<f64>,
    /// sha256 of the client's private tensors after the instruction (what never leaves it).
    pub private_sha256: String,
    /// Bytes pulled and pushed, and seconds in the protocol and in the handler.
    pub stats: Option<MessageStatsReport>,
}

/// [`MessageStats`] in a serialisable form.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MessageStatsReport {
    /// Bytes pulled for the instruction.
    pub bytes_pulled: usize,
    /// Bytes pushed for the reply.
    pub bytes_pushed: usize,
    /// Seconds in the protocol (pull, verify, push).
    pub protocol_seconds: f64,
    /// Seconds in the handler (training, evaluation).
    pub handler_seconds: f64,
}

/// A callback told what the node did after every reply.
type Observer = Box<dyn FnMut(&NodeReport)>;

/// One fedvlm client answering a Flower SuperLink's instructions.
pub struct NodeApp<B: AutodiffBackend, T: FederatedTask<B>> {
    task: T,
    client: ClientRuntime<B, T::Model>,
    config: ClientConfig,
    expected: Payload,
    wire: NpyDtype,
    state_dir: Option<ClientStateDir>,
    pending: Option<NodeReport>,
    observer: Option<Observer>,
}

impl<B: AutodiffBackend, T: FederatedTask<B>> NodeApp<B, T> {
    /// A node for `client` of `task`, training with `config` (a `local-epochs` or `lr` in an
    /// instruction's config overrides it for that round) and sending tensors as `wire`.
    pub fn new(
        task: T,
        client: ClientRuntime<B, T::Model>,
        config: ClientConfig,
        wire: NpyDtype,
    ) -> Result<Self> {
        config.validate()?;
        let expected = client.shared();
        Ok(Self {
            task,
            client,
            config,
            expected,
            wire,
            state_dir: None,
            pending: None,
            observer: None,
        })
    }

    /// Keeps the client's private state in `dir` (atomic writes after every train; with
    /// `keep_optimizer_state`, the local optimiser's state too), and restores it from there now
    /// if a previous process saved one: a node killed and restarted with the same folder
    /// rejoins with its own `A` (and its optimiser). Returns the restored round.
    pub fn with_state_dir(
        mut self,
        dir: impl Into<std::path::PathBuf>,
    ) -> Result<(Self, Option<u64>)> {
        let dir = ClientStateDir::new(dir, self.client.client(), self.client.spec().sharing);
        let restored = match dir.load()? {
            Some(saved) => {
                self.client.restore_state(&saved.tensors, saved.synced)?;
                if let (Some(state), true) = (&saved.optimizer, self.config.keep_optimizer_state) {
                    self.client
                        .restore_optimizer_state(&self.config.optimizer, state)?;
                }
                Some(saved.last_round)
            }
            None => None,
        };
        self.state_dir = Some(dir);
        Ok((self, restored))
    }

    /// Calls `observer` after every reply with what the node did.
    pub fn with_observer(mut self, observer: impl FnMut(&NodeReport) + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The client runtime.
    pub fn client(&self) -> &ClientRuntime<B, T::Model> {
        &self.client
    }

    /// sha256 (hex) of the client's private tensors: every tensor of its federated state that
    /// does not travel.
    pub fn private_sha256(&self) -> String {
        let state = self.client.state();
        let mut hasher = Sha256::new();
        for (name, tensor) in &state.tensors {
            if self.expected.tensors.contains_key(name) {
                continue;
            }
            hasher.update(name.as_bytes());
            for value in &tensor.values {
                hasher.update(value.to_le_bytes());
            }
        }
        crate::federated::client_state::hex(&hasher.finalize())
    }

    fn train(&mut self, config: &ConfigRecord, round: u64, payload: Payload) -> Result<RecordDict> {
        let mut local = self.config.clone();
        if let Some(epochs) = int(config, keys::LOCAL_EPOCHS)? {
            local.local_epochs = usize::try_from(epochs).unwrap_or(0);
        }
        if let Some(lr) = float(config, keys::LR)? {
            local.lr = lr;
        }
        local.validate()?;
        let mu = float(config, keys::PROXIMAL_MU)?.filter(|mu| *mu != 0.0);
        if let Some(mu) = mu
            && !(mu.is_finite() && mu > 0.0)
        {
            return Err(FedError::config(
                "proximal-mu",
                format!("must be >= 0, got {mu}"),
            ));
        }
        let clipping = float(config, keys::CLIPPING_NORM)?;
        if let Some(norm) = clipping
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(FedError::config(
                "clipping_norm",
                format!("must be > 0, got {norm}"),
            ));
        }
        let snapshot = (self.client.state(), self.client.synced());
        self.client.receive(&payload)?;
        let prox = mu.map(|mu| (&payload, mu));
        let mut trained = match self.client.train(&self.task, round, &local, prox) {
            Ok(trained) => trained,
            Err(e) => {
                self.client.restore_state(&snapshot.0, snapshot.1)?;
                return Err(e);
            }
        };
        if let Some(norm) = clipping {
            clip_update(&mut trained.update, &payload, norm);
        }
        if let Some(dir) = &self.state_dir {
            let optimizer = self.client.optimizer_state()?;
            dir.save_with_optimizer(
                &self.client.state(),
                optimizer.as_ref().filter(|_| local.keep_optimizer_state),
                round,
                self.client.synced(),
            )?;
        }
        let metrics = MetricRecord::default()
            .with(keys::NUM_EXAMPLES, Value::Sint64(trained.examples as i64))
            .with(keys::TRAIN_LOSS, Value::Double(trained.train_loss));
        self.note(|r| {
            r.num_examples = Some(trained.examples);
            r.train_loss = Some(trained.train_loss);
        });
        Ok(RecordDict::new()
            .with_arrays(
                keys::ARRAYS,
                ArrayRecord::from_payload(&trained.update, self.wire),
            )
            .with_metrics(keys::METRICS, metrics))
    }

    fn evaluate(&mut self, payload: Payload) -> Result<RecordDict> {
        self.client.receive(&payload)?;
        let n = self.task.num_examples(self.client.client(), Split::Test);
        let metrics = self
            .client
            .evaluate(&self.task, Split::Test, self.config.eval_batch_size)?;
        let (accuracy, loss) = metrics.map_or((0.0, 0.0), |m| (m.accuracy, m.loss));
        self.note(|r| {
            r.num_examples = Some(n);
            r.accuracy = Some(accuracy);
            r.loss = Some(loss);
        });
        Ok(RecordDict::new().with_metrics(
            keys::METRICS,
            MetricRecord::default()
                .with(keys::NUM_EXAMPLES, Value::Sint64(n as i64))
                .with(keys::ACCURACY, Value::Double(accuracy))
                .with(keys::LOSS, Value::Double(loss)),
        ))
    }

    fn query(&mut self) -> RecordDict {
        let k = self.client.client();
        let count = |split| self.task.num_examples(k, split) as i64;
        RecordDict::new().with_metrics(
            keys::METRICS,
            MetricRecord::default()
                .with(keys::NUM_EXAMPLES, Value::Sint64(count(Split::Train)))
                .with("num-test-examples", Value::Sint64(count(Split::Test)))
                .with("partition-id", Value::Sint64(k as i64)),
        )
    }

    /// The instruction's arrays as a payload of the previous round's global state, checked
    /// against the sharing rule and the expected names and shapes before anything is written.
    fn received(&self, instruction: &Instruction, round: u64) -> Result<Payload> {
        let arrays = instruction.content.arrays(keys::ARRAYS).ok_or_else(|| {
            FedError::config("arrays", "the instruction carries no `arrays` record")
        })?;
        let mut payload = arrays
            .to_payload()
            .map_err(|e| FedError::config("arrays", e.to_string()))?;
        payload.round = round.saturating_sub(1);
        // The rule first (a private `lora_a` is named as such), then completeness.
        self.client.personalized(&payload)?;
        payload.check_matches(&self.expected)?;
        Ok(payload)
    }

    fn dispatch(&mut self, instruction: &Instruction) -> Result<RecordDict> {
        let empty = ConfigRecord::default();
        let config = instruction.content.config(keys::CONFIG).unwrap_or(&empty);
        let round = int(config, keys::SERVER_ROUND)?;
        self.note(|r| r.round = round.unwrap_or(0).max(0) as u64);
        match instruction.message_type.as_str() {
            "train" => {
                let round = round
                    .filter(|r| *r >= 1)
                    .ok_or_else(|| FedError::config("server-round", "missing or below 1"))?
                    as u64;
                let payload = self.received(instruction, round)?;
                self.train(config, round, payload)
            }
            "evaluate" => {
                let round = round.unwrap_or(0).max(0) as u64;
                let payload = self.received(instruction, round + 1)?;
                self.evaluate(payload)
            }
            "query" => Ok(self.query()),
            other => Err(FedError::config(
                "message_type",
                format!("`{other}` is not handled (train, evaluate, query)"),
            )),
        }
    }

    fn note(&mut self, change: impl FnOnce(&mut NodeReport)) {
        if let Some(report) = self.pending.as_mut() {
            change(report);
        }
    }
}

impl<B: AutodiffBackend, T: FederatedTask<B>> NodeHandler for NodeApp<B, T> {
    fn handle(&mut self, instruction: &Instruction) -> std::result::Result<RecordDict, ReplyError> {
        self.pending = Some(NodeReport {
            message_type: instruction.message_type.clone(),
            round: 0,
            partition: self.client.client(),
            error: None,
            num_examples: None,
            train_loss: None,
            accuracy: None,
            loss: None,
            private_sha256: String::new(),
            stats: None,
        });
        let result = self
            .dispatch(instruction)
            .map_err(|e| ReplyError::new(e.to_string()));
        let private = self.private_sha256();
        self.note(|r| {
            r.error = result.as_ref().err().map(|e| e.reason.clone());
            r.private_sha256 = private;
        });
        result
    }

    fn after_reply(&mut self, stats: &MessageStats) {
        if let Some(mut report) = self.pending.take() {
            report.stats = Some(MessageStatsReport {
                bytes_pulled: stats.bytes_pulled,
                bytes_pushed: stats.bytes_pushed,
                protocol_seconds: stats.protocol_seconds,
                handler_seconds: stats.handler_seconds,
            });
            if let Some(observer) = self.observer.as_mut() {
                observer(&report);
            }
        }
    }
}

/// An integer config value, if present (an error when present but not an integer).
fn int(config: &ConfigRecord, key: &'static str) -> Result<Option<i64>> {
    config
        .get(key)
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| FedError::config(key, format!("must be an integer, got {v:?}")))
        })
        .transpose()
}

/// A number config value, if present (an error when present but not a number).
fn float(config: &ConfigRecord, key: &'static str) -> Result<Option<f64>> {
    config
        .get(key)
        .map(|v| {
            v.as_f64()
                .ok_or_else(|| FedError::config(key, format!("must be a number, got {v:?}")))
        })
        .transpose()
}

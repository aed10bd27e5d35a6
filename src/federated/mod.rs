//! Federation: one client's local work ([`ClientRuntime`]), the server, the task trait a user
//! implements, the in-process simulation over K clients, reports and checkpoints.
//!
//! The named-tensor types travel from [`crate::params`] and the sharing rule's
//! collect/apply from [`crate::lora`]; both are re-exported here, where users have always
//! imported them (`fedvlm::federated::{Payload, ShareSpec, apply_payload, ...}`).

mod atomic;
pub mod checkpoint;
pub mod client;
pub mod client_state;
pub mod cohort;
pub mod export;
pub mod failures;
pub mod federation;
mod optimizer;
mod optimizer_state;
pub mod phase;
pub mod prox;
pub mod report;
mod resume;
mod round_eval;
pub mod run_dir;
pub mod server;
pub mod simulation;
pub mod task;

pub use crate::lora::{ShareSpec, apply_payload, collect_client_state, collect_shared};
pub use crate::params::state::{apply_tensors, collect_where, parameter_shapes};
pub use crate::params::{
    ClientUpdate, Payload, PayloadError, TensorRole, TensorValues, WireDtype, path, payload,
};
pub use atomic::write_atomic;
pub use client::{
    ClientConfig, ClientModel, ClientRuntime, LocalTraining, OptimizerConfig, evaluate_model,
};
pub use client_state::{ClientStateDir, SavedClientState};
pub use cohort::{CohortMode, CohortTrainer};
pub use export::{
    LabelledRun, MetricNames, write_csv, write_csv_named, write_svg_chart, write_svg_chart_named,
};
pub use failures::FailurePolicy;
pub use federation::Federation;
pub use phase::{RunPhase, set_phase_observer};
pub use prox::{ProxAnchor, proximal_term};
pub use report::{ClientRoundReport, JsonlWriter, RoundReport};
pub use run_dir::{CHECKPOINT_DIR, METRICS_FILE, SETTINGS_FILE, run_in_dir, run_in_dir_with};
pub use server::Server;
pub use simulation::{Simulation, SimulationConfig};
pub use task::{EvalBatch, FederatedTask, Split, dataset_rows};

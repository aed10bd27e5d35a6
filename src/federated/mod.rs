//! Federation: what travels ([`payload`]), reading and writing it from a model ([`state`]),
//! the server, the client-side task a user implements, and the simulation runner.

pub mod checkpoint;
pub mod export;
pub mod path;
pub mod payload;
pub mod prox;
pub mod report;
pub mod run_dir;
pub mod server;
pub mod simulation;
pub mod state;
pub mod task;

pub use export::{LabelledRun, write_csv, write_svg_chart};
pub use path::TensorRole;
pub use payload::{Payload, PayloadError, TensorValues, WireDtype};
pub use prox::{ProxAnchor, proximal_term};
pub use report::{ClientRoundReport, JsonlWriter, RoundReport};
pub use run_dir::{CHECKPOINT_DIR, METRICS_FILE, SETTINGS_FILE, run_in_dir};
pub use server::{ClientUpdate, Server};
pub use simulation::{OptimizerConfig, Simulation, SimulationConfig};
pub use state::{ShareSpec, apply_payload, collect_client_state, collect_shared, collect_where};
pub use task::{EvalBatch, FederatedTask, Split, dataset_rows};

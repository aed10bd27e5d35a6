//! Flags every experiment example shares: failing clients and differential privacy.

use fedvlm::federated::FailurePolicy;
use fedvlm::strategy::DpSettings;

/// Failing clients (Flower's semantics) and differential privacy.
#[derive(clap::Args, Debug, Clone)]
pub struct RobustnessArgs {
    /// Fault injection: drop each sampled client from a round with this probability (seeded).
    #[arg(long)]
    pub client_failure_rate: Option<f64>,
    /// Aggregate only when at least this many updates arrive (Flower's min_fit_clients).
    #[arg(long)]
    pub min_fit_clients: Option<usize>,
    /// Aggregate rounds in which some clients failed (Flower's accept_failures): true or false.
    #[arg(long)]
    pub accept_failures: Option<bool>,
    /// Cap on the example count one update may claim (FedAvg's weight).
    #[arg(long)]
    pub max_examples_per_update: Option<u64>,
    /// Differential privacy: clip every update to this L2 norm (default 1 when --dp-noise or
    /// --target-epsilon is given) and add Gaussian noise on the server.
    #[arg(long)]
    pub dp_clip: Option<f64>,
    /// DP noise multiplier (noise std = multiplier x clip / sampled clients).
    #[arg(long, conflicts_with = "target_epsilon")]
    pub dp_noise: Option<f64>,
    /// DP: the epsilon the whole run may spend (delta = 1 / training examples); the noise
    /// multiplier is solved for it (Opacus's get_noise_multiplier).
    #[arg(long)]
    pub target_epsilon: Option<f64>,
    /// DP: clients clip their own updates (client-side fixed clipping) instead of the server.
    #[arg(long)]
    pub dp_client_side: bool,
}

impl RobustnessArgs {
    /// Writes the flags given into an experiment's settings.
    pub fn apply(&self, failures: &mut FailurePolicy, dp: &mut Option<DpSettings>) {
        if let Some(rate) = self.client_failure_rate {
            failures.client_failure_rate = rate;
        }
        if let Some(min) = self.min_fit_clients {
            failures.min_fit_clients = min;
        }
        if let Some(accept) = self.accept_failures {
            failures.accept_failures = accept;
        }
        if self.max_examples_per_update.is_some() {
            failures.max_examples_per_update = self.max_examples_per_update;
        }
        if self.dp_clip.is_some() || self.dp_noise.is_some() || self.target_epsilon.is_some() {
            *dp = Some(DpSettings {
                clipping_norm: self.dp_clip.unwrap_or(1.0),
                noise_multiplier: self.dp_noise,
                target_epsilon: self.target_epsilon,
                client_side: self.dp_client_side,
            });
        }
    }
}

/// Prints the privacy each run spent (the last report's), for runs under DP.
pub fn print_privacy<'a>(
    runs: impl IntoIterator<Item = (&'a str, &'a [fedvlm::federated::RoundReport])>,
) {
    for (label, reports) in runs {
        if let Some((epsilon, delta)) = reports.last().and_then(|r| r.privacy) {
            println!("{label}: privacy spent epsilon = {epsilon:.3} at delta = {delta:.2e}");
        }
    }
}

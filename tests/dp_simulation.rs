//! Client-side DP in the simulation: with `DpClientSideFixedClipping`, every client clips its
//! update (relative to the global it received) before sending, so with no noise the global
//! state moves by at most the clipping norm per round; server-side `DpFixedClipping` bounds it
//! the same way.

use burn::backend::{Autodiff, Flex};
use fedvlm::federated::{Payload, ShareSpec};
use fedvlm::privacy::RdpAccountant;
use fedvlm::strategy::{
    DpClientSideFixedClipping, DpConfig, DpFixedClipping, DpSettings, Strategy,
};
use fedvlm::synthetic::Quickstart;
use fedvlm::{FedAvg, Sharing, Simulation};

type B = Autodiff<Flex>;

fn distance(a: &Payload, b: &Payload) -> f64 {
    a.tensors
        .iter()
        .flat_map(|(name, t)| t.values.iter().zip(&b.tensors[name].values))
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// The largest move of the global state in one round, over 3 rounds.
fn largest_step<S: Strategy>(strategy: S) -> f64 {
    let mut quickstart = Quickstart::new(3);
    quickstart.simulation.rounds = 3;
    quickstart.simulation.progress = false;
    let device = Default::default();
    let mut sim = Simulation::new(
        quickstart.simulation.clone(),
        ShareSpec::new(Sharing::PLora),
        quickstart.task::<B>(&device).unwrap(),
        strategy,
        quickstart.models::<B>(&device).unwrap(),
    )
    .unwrap();
    let mut largest: f64 = 0.0;
    for _ in 0..3 {
        let before = sim.server().global().clone();
        sim.run_one_round().unwrap();
        largest = largest.max(distance(&before, sim.server().global()));
    }
    largest
}

#[test]
fn clipping_bounds_how_far_the_global_state_moves() {
    let dp = |clipping_norm| DpConfig {
        noise_multiplier: 0.0,
        clipping_norm,
        num_sampled_clients: 3,
        seed: 1,
    };
    let free = largest_step(FedAvg::new());
    assert!(free > 0.5, "unclipped steps are large: {free}");
    let client_side = largest_step(DpClientSideFixedClipping::new(FedAvg::new(), dp(0.05)));
    assert!(
        client_side <= 0.05 + 1e-5,
        "client-side clipping: {client_side}"
    );
    assert!(client_side > 0.01, "{client_side}");
    let server_side = largest_step(DpFixedClipping::new(FedAvg::new(), dp(0.05)));
    assert!(
        server_side <= 0.05 + 1e-5,
        "server-side clipping: {server_side}"
    );
}

#[test]
fn every_round_reports_the_privacy_spent() {
    let mut quickstart = Quickstart::new(3);
    quickstart.simulation.rounds = 3;
    quickstart.simulation.progress = false;
    let device = Default::default();
    let dp = DpConfig {
        noise_multiplier: 1.1,
        clipping_norm: 1.0,
        num_sampled_clients: 3,
        seed: 5,
    };
    let mut sim = Simulation::new(
        quickstart.simulation.clone(),
        ShareSpec::new(Sharing::PLora),
        quickstart.task::<B>(&device).unwrap(),
        DpFixedClipping::new(FedAvg::new(), dp),
        quickstart.models::<B>(&device).unwrap(),
    )
    .unwrap();
    let reports = sim.run(|_, _| Ok(())).unwrap();
    let delta = 1.0 / (3.0 * 192.0);
    assert_eq!(sim.privacy_delta(), delta);
    let mut accountant = RdpAccountant::new();
    for report in reports.iter().filter(|r| r.round > 0) {
        accountant.step(1.1, 1.0, 1);
        let (epsilon, reported_delta) = report.privacy.expect("a DP run reports privacy");
        assert_eq!(reported_delta, delta);
        assert_eq!(epsilon, accountant.epsilon(delta), "round {}", report.round);
    }
    // Without DP, nothing is reported.
    let plain = largest_step(FedAvg::new());
    assert!(plain > 0.0);

    // A target epsilon resolves to the noise that keeps the whole run within it.
    let settings = DpSettings {
        clipping_norm: 1.0,
        noise_multiplier: None,
        target_epsilon: Some(8.0),
        client_side: false,
    };
    let config = settings.resolve(3, 3, 3, delta, 1).unwrap();
    let mut check = RdpAccountant::new();
    check.step(config.noise_multiplier, 1.0, 3);
    assert!(check.epsilon(delta) <= 8.0);
    let both = DpSettings {
        noise_multiplier: Some(1.0),
        ..settings
    };
    assert!(both.resolve(3, 3, 3, delta, 1).is_err());
}

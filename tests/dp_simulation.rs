//! Client-side DP in the simulation: with `DpClientSideFixedClipping`, every client clips its
//! update (relative to the global it received) before sending, so with no noise the global
//! state moves by at most the clipping norm per round; server-side `DpFixedClipping` bounds it
//! the same way.

use burn::backend::{Autodiff, Flex};
use fedvlm::federated::{Payload, ShareSpec};
use fedvlm::strategy::{DpClientSideFixedClipping, DpConfig, DpFixedClipping, Strategy};
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

//! The client runtime alone, driven as a Flower node drives it (receive, train, send, receive,
//! evaluate), trains exactly what the in-process simulation trains with the same seeds.

use burn::backend::{Autodiff, Flex};
use fedvlm::federated::{
    ClientRuntime, ClientStateDir, ClientUpdate, Payload, Server, ShareSpec, Split, WireDtype,
};
use fedvlm::lora::common_frozen_a;
use fedvlm::synthetic::{Quickstart, SyntheticModel};
use fedvlm::{FedAvg, FedProx, Sharing, Simulation};

type B = Autodiff<Flex>;

fn quickstart(clients: usize, rounds: u64) -> Quickstart {
    let mut quickstart = Quickstart::new(clients);
    quickstart.simulation.rounds = rounds;
    quickstart.simulation.local_epochs = 1;
    quickstart.simulation.progress = false;
    quickstart
}

/// Per round, every client's (test accuracy, test loss) of the personalised model, computed by
/// runtimes driven by hand through the wire format.
fn by_hand(quickstart: &Quickstart, sharing: Sharing, mu: Option<f64>) -> Vec<Vec<(f64, f64)>> {
    let device = Default::default();
    let task = quickstart.task::<B>(&device).unwrap();
    let spec = ShareSpec::new(sharing);
    let config = quickstart.simulation.client_config();
    let mut clients: Vec<ClientRuntime<B, SyntheticModel<B>>> = (0..quickstart.data.num_clients)
        .map(|k| ClientRuntime::new(k, quickstart.model(k, &device).unwrap(), spec.clone()))
        .collect();
    if let Some(a) = common_frozen_a(&spec, clients[0].model()) {
        clients.iter_mut().for_each(|c| c.overwrite(&a).unwrap());
    }
    let mut server = Server::new(clients[0].shared(), FedAvg::new()).unwrap();
    let wire = |p: &Payload| Payload::from_bytes(&p.to_bytes(WireDtype::F32).unwrap()).unwrap();
    let mut rounds = Vec::new();
    for round in 1..=quickstart.simulation.rounds {
        let global = wire(server.global());
        let mut updates = Vec::new();
        for client in clients.iter_mut() {
            client.receive(&global).unwrap();
            let trained = client
                .train(&task, round, &config, mu.map(|mu| (&global, mu)))
                .unwrap();
            assert_eq!(trained.update.round, round);
            updates.push(ClientUpdate {
                client: client.client(),
                payload: wire(&trained.update),
            });
        }
        assert!(server.aggregate(round, updates).unwrap().is_empty());
        let global = wire(server.global());
        let metrics = clients
            .iter_mut()
            .map(|client| {
                client.receive(&global).unwrap();
                let m = client.evaluate(&task, Split::Test, 64).unwrap().unwrap();
                (m.accuracy, m.loss)
            })
            .collect();
        rounds.push(metrics);
    }
    rounds
}

fn simulated(quickstart: &Quickstart, sharing: Sharing, mu: Option<f64>) -> Vec<Vec<(f64, f64)>> {
    let device = Default::default();
    let task = quickstart.task::<B>(&device).unwrap();
    let models = quickstart.models::<B>(&device).unwrap();
    let spec = ShareSpec::new(sharing);
    let reports = match mu {
        None => Simulation::new(
            quickstart.simulation.clone(),
            spec,
            task,
            FedAvg::new(),
            models,
        )
        .unwrap()
        .run(|_, _| Ok(()))
        .unwrap(),
        Some(mu) => Simulation::new(
            quickstart.simulation.clone(),
            spec,
            task,
            FedProx::new(mu),
            models,
        )
        .unwrap()
        .run(|_, _| Ok(()))
        .unwrap(),
    };
    reports
        .iter()
        .filter(|r| r.round > 0)
        .map(|r| {
            r.clients
                .iter()
                .map(|c| {
                    let m = c.test.unwrap();
                    (m.accuracy, m.loss)
                })
                .collect()
        })
        .collect()
}

#[test]
fn a_runtime_driven_by_hand_equals_the_simulation_under_every_rule() {
    let quickstart = quickstart(3, 2);
    for sharing in Sharing::ALL {
        let expected = simulated(&quickstart, sharing, None);
        assert_eq!(by_hand(&quickstart, sharing, None), expected, "{sharing}");
    }
    let expected = simulated(&quickstart, Sharing::PLora, Some(0.1));
    assert_eq!(
        by_hand(&quickstart, Sharing::PLora, Some(0.1)),
        expected,
        "fedprox"
    );
    // The comparison can fail: a different seed trains something else.
    let mut other = quickstart.clone();
    other.simulation.seed += 1;
    assert_ne!(by_hand(&other, Sharing::PLora, None), expected);
}

#[test]
fn a_failed_receipt_leaves_the_client_unchanged() {
    let quickstart = quickstart(2, 1);
    let device = Default::default();
    let spec = ShareSpec::new(Sharing::PLora);
    let mut client: ClientRuntime<B, SyntheticModel<B>> =
        ClientRuntime::new(0, quickstart.model(0, &device).unwrap(), spec);
    let before = client.state();
    let mut hostile = client.state(); // names the private lora_a
    for t in hostile.tensors.values_mut() {
        t.values.iter_mut().for_each(|v| *v = 7.0);
    }
    assert!(client.receive(&hostile).is_err());
    assert_eq!(client.state(), before);
    assert_eq!(client.synced(), None);
}

#[test]
fn a_kept_optimiser_survives_a_restart_through_the_state_dir() {
    let quickstart = quickstart(2, 3);
    let device = Default::default();
    let task = quickstart.task::<B>(&device).unwrap();
    let spec = ShareSpec::new(Sharing::PLora);
    let mut config = quickstart.simulation.client_config();
    config.keep_optimizer_state = true;
    let new_client = || {
        ClientRuntime::<B, SyntheticModel<B>>::new(
            0,
            quickstart.model(0, &device).unwrap(),
            spec.clone(),
        )
    };
    let global = new_client().shared();

    let mut running = new_client();
    assert!(running.optimizer_state().unwrap().is_none());
    for round in 1..=2 {
        running.receive(&global).unwrap();
        running.train(&task, round, &config, None).unwrap();
    }
    let root = tempfile::tempdir().unwrap();
    let dir = ClientStateDir::new(root.path(), 0, Sharing::PLora);
    let optimizer = running.optimizer_state().unwrap().expect("kept");
    dir.save_with_optimizer(&running.state(), Some(&optimizer), 2, running.synced())
        .unwrap();

    // A new process: the same client rebuilt (other parameter ids), restored from the folder.
    let saved = dir.load().unwrap().unwrap();
    let mut restarted = new_client();
    restarted
        .restore_state(&saved.tensors, saved.synced)
        .unwrap();
    restarted
        .restore_optimizer_state(&config.optimizer, saved.optimizer.as_ref().unwrap())
        .unwrap();
    let mut forgetful = new_client();
    forgetful
        .restore_state(&saved.tensors, saved.synced)
        .unwrap();

    let third = |client: &mut ClientRuntime<B, SyntheticModel<B>>| {
        client.receive(&global).unwrap();
        client.train(&task, 3, &config, None).unwrap().update
    };
    let expected = third(&mut running);
    assert_eq!(third(&mut restarted), expected);
    assert_ne!(third(&mut forgetful), expected);

    // A damaged optimiser file is detected, never used.
    let file = root.path().join("client_optimizer.safetensors");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    assert!(dir.load().unwrap_err().to_string().contains("sha256"));
}

//! Federated runs end to end: what each rule shares, with and without the cache; micro-batches.

use super::*;

/// Two clients of 4 train / 2 test synthetic samples: their models (`lora` on the default
/// targets, trainability by `sharing`) and the task, with an f32 cache when `cached`.
fn two_clients(
    lora: &LoraConfig,
    sharing: Sharing,
    cached: bool,
) -> (Vec<Florence2<B>>, VqaTask<B>) {
    let samples = Arc::new(synthetic(12, 9));
    let split = split(2, 4, 2);
    let models: Vec<Florence2<B>> = (0..2)
        .map(|k| {
            let model = base_model::<B>();
            let targets = model.default_adapter_targets();
            let model = model.with_adapters(lora, &targets, 100 + k).unwrap();
            freeze_all(model, sharing)
        })
        .collect();
    let mut task = tasks(&samples, &split);
    if cached {
        task = task
            .with_cache(cache_of(&models[0], &samples, CacheDtype::F32, usize::MAX))
            .unwrap();
    }
    (models, task)
}

fn run(sharing: Sharing, cached: bool) -> (Vec<RoundReport>, Vec<Payload>) {
    let (models, task) = two_clients(&LoraConfig::paper(), sharing, cached);
    let config = SimulationConfig {
        rounds: 2,
        local_epochs: 2,
        batch_size: 2,
        eval_batch_size: 4,
        lr: 0.05,
        seed: 3,
        progress: false,
        ..SimulationConfig::default()
    };
    let spec = ShareSpec::new(sharing);
    let mut sim = Simulation::new(config, spec.clone(), task, FedAvg::new(), models).unwrap();
    let reports = sim.run(|_, _| Ok(())).unwrap();
    let payloads = (0..2)
        .map(|k| collect_shared(sim.client_model(k).unwrap(), &spec))
        .collect();
    (reports, payloads)
}

#[test]
fn federated_runs_share_only_the_rule_s_tensors_and_match_with_the_cache() {
    let _guard = serial();
    for sharing in [Sharing::PLora, Sharing::FedAvgLora] {
        let (reports, payloads) = run(sharing, false);
        // Round 0 (before fine-tuning) and two rounds, every client scored every time.
        assert_eq!(reports.len(), 3);
        for report in &reports {
            assert_eq!(report.clients.len(), 2);
            for client in &report.clients {
                let test = client.test.expect("test metrics");
                assert!(test.count > 0 && test.loss.is_finite());
                assert!((0.0..=1.0).contains(&test.accuracy));
            }
        }
        let trained = &reports[2].clients[0];
        assert!(trained.participated && trained.train_loss.is_some() && trained.bytes_up > 0);
        // Training moved the test loss.
        let before = reports[0].clients[0].test.unwrap().loss;
        let after = reports[2].clients[0].test.unwrap().loss;
        assert!((before - after).abs() > 1e-4, "{before} -> {after}");
        // What travels: pLoRA exactly the two lora_b, FedAvg-LoRA both matrices.
        let mut expected: Vec<String> = ["q_proj", "v_proj"]
            .iter()
            .flat_map(|p| {
                let path = format!("language_model.decoder.layers.1.self_attn.{p}");
                match sharing {
                    Sharing::PLora => vec![format!("{path}.lora_b")],
                    _ => vec![format!("{path}.lora_a"), format!("{path}.lora_b")],
                }
            })
            .collect();
        expected.sort();
        let names: Vec<&str> = payloads[0].names().collect();
        assert_eq!(names, expected, "{sharing:?}");
        // After aggregation both clients hold the same shared tensors.
        assert_eq!(payloads[0].tensors, payloads[1].tensors);

        let (cached, _) = run(sharing, true);
        for (a, b) in reports.iter().zip(&cached) {
            for (ca, cb) in a.clients.iter().zip(&b.clients) {
                let (ta, tb) = (ca.test.unwrap(), cb.test.unwrap());
                assert!(
                    (ta.loss - tb.loss).abs() < 1e-4,
                    "{sharing:?} round {}",
                    a.round
                );
                assert!((ta.accuracy - tb.accuracy).abs() < 1e-9);
                let (la, lb) = (ca.train_loss.unwrap_or(0.0), cb.train_loss.unwrap_or(0.0));
                assert!((la - lb).abs() < 1e-4, "{sharing:?} round {}", a.round);
            }
        }
    }
}

/// [`VqaTask`] with the default [`FederatedTask::loss_weight`] (examples, not answer tokens):
/// what the accumulated step would be if micro-batches counted by their example counts.
struct ExampleWeighted(VqaTask<B>);

impl FederatedTask<B> for ExampleWeighted {
    type Model = Florence2<B>;

    fn num_clients(&self) -> usize {
        self.0.num_clients()
    }
    fn num_classes(&self) -> usize {
        self.0.num_classes()
    }
    fn num_examples(&self, client: usize, split: Split) -> usize {
        self.0.num_examples(client, split)
    }
    fn device(&self) -> burn::tensor::Device<B> {
        self.0.device()
    }
    fn loss(
        &self,
        model: &Florence2<B>,
        client: usize,
        batch: &[usize],
    ) -> fedvlm::Result<Tensor<B, 1>> {
        self.0.loss(model, client, batch)
    }
    fn evaluate(
        &self,
        model: &Florence2<I>,
        client: usize,
        split: Split,
        batch: &[usize],
    ) -> fedvlm::Result<fedvlm::federated::EvalBatch> {
        self.0.evaluate(model, client, split, batch)
    }
}

/// Every client's adapters after one round of batch-4 SGD (plain SGD: the step is
/// proportional to the gradient, unlike Adam's), run whole or as micro-batches (`micro`),
/// with adapter dropout off so that nothing draws random numbers.
fn adapters_after_round<T: FederatedTask<B, Model = Florence2<B>>>(
    micro: Option<usize>,
    cached: bool,
    wrap: impl Fn(VqaTask<B>) -> T,
) -> Vec<Vec<f32>> {
    let lora = LoraConfig::paper().with_dropout(0.0);
    let (models, task) = two_clients(&lora, Sharing::FedSaLora, cached);
    let config = SimulationConfig {
        rounds: 1,
        local_epochs: 2,
        batch_size: 4,
        micro_batch_size: micro,
        eval_batch_size: 4,
        lr: 0.5,
        optimizer: OptimizerConfig::Sgd {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        seed: 3,
        progress: false,
        evaluate_initial: false,
        // Micro-batches train sequentially; the whole batches must too, for the bit-for-bit
        // comparison (cohorts are compared with sequential training in tests/vqa_cohort.rs).
        cohort: CohortMode::Off,
        ..SimulationConfig::default()
    };
    // FedSA-LoRA keeps B private: each client's own trained B is compared.
    let spec = ShareSpec::new(Sharing::FedSaLora);
    let mut sim = Simulation::new(config, spec, wrap(task), FedAvg::new(), models).unwrap();
    sim.run(|_, _| Ok(())).unwrap();
    (0..2)
        .map(|k| {
            let everything = collect_shared(
                sim.client_model(k).unwrap(),
                &ShareSpec::new(Sharing::FedAvgLora),
            );
            everything
                .tensors
                .values()
                .flat_map(|t| t.values.clone())
                .collect()
        })
        .collect()
}

/// Largest difference between `a` and `b` relative to `a`'s largest value.
fn relative_gap(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| {
            let diff = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            diff / a.iter().map(|x| x.abs()).fold(0f32, f32::max).max(1e-12)
        })
        .fold(0f32, f32::max)
}

#[test]
fn micro_batches_take_the_whole_batch_s_step_weighted_by_answer_tokens() {
    let _guard = serial();
    // The answers of a batch differ in length, so counting every micro-batch's mean loss by
    // its examples instead of its answer tokens is a different step.
    let lengths: Vec<usize> = synthetic(12, 9).iter().map(|s| s.answer_len()).collect();
    assert!(lengths[..4].iter().any(|&l| l != lengths[0]), "{lengths:?}");
    let same = |t: VqaTask<B>| t;
    for cached in [false, true] {
        let whole = adapters_after_round(None, cached, same);
        assert_eq!(
            whole,
            adapters_after_round(Some(4), cached, same),
            "a micro-batch as large as the batch is the batch"
        );
        for micro in [1, 3] {
            let gap = relative_gap(&whole, &adapters_after_round(Some(micro), cached, same));
            assert!(gap < 1e-5, "micro {micro} cached {cached}: {gap}");
        }
    }
    let wrong = relative_gap(
        &adapters_after_round(None, true, same),
        &adapters_after_round(Some(1), true, ExampleWeighted),
    );
    assert!(wrong > 1e-3, "weighting by examples should differ: {wrong}");
}
#[test]
fn micro_batches_of_zero_are_refused() {
    let config = SimulationConfig {
        micro_batch_size: Some(0),
        ..SimulationConfig::default()
    };
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("micro_batch_size"), "{err}");
}

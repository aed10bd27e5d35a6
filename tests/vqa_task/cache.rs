//! The frozen-prefix cache: cached and uncached losses, half precision, threads and budget,
//! adapters outside the last layer refused.

use super::*;

#[test]
fn cached_and_uncached_losses_agree() {
    let _guard = serial();
    let samples = Arc::new(synthetic(8, 3));
    let split = split(1, 6, 2);
    let model = adapted(5);
    let plain = tasks(&samples, &split);
    let rows = [0usize, 1, 2, 3, 4, 5];
    let reference = loss_of(&plain, &model, &rows);
    // Different lengths in the batch: prompts and answers are padded.
    assert!(
        samples.iter().map(|s| s.prompt_len()).min() < samples.iter().map(|s| s.prompt_len()).max()
    );

    let exact = cache_of(&model, &samples, CacheDtype::F32, usize::MAX);
    assert_eq!(exact.len(), 8);
    let f32_task = tasks(&samples, &split).with_cache(exact.clone()).unwrap();
    let cached = loss_of(&f32_task, &model, &rows);
    assert!((cached - reference).abs() < 1e-5, "{cached} vs {reference}");

    let half = cache_of(&model, &samples, CacheDtype::F16, usize::MAX);
    assert_eq!(half.bytes() * 2, exact.bytes());
    let f16_task = tasks(&samples, &split).with_cache(half).unwrap();
    let cached = loss_of(&f16_task, &model, &rows);
    assert!(
        (cached - reference).abs() < 2e-3 * reference.abs(),
        "{cached} vs {reference}"
    );

    // A budget for about half the samples: the rest are recomputed, same loss.
    let small = cache_of(&model, &samples, CacheDtype::F32, exact.bytes() / 2);
    assert!(!small.is_empty() && small.len() < 8, "{}", small.len());
    let partial = tasks(&samples, &split).with_cache(small).unwrap();
    let cached = loss_of(&partial, &model, &rows);
    assert!((cached - reference).abs() < 1e-5, "{cached} vs {reference}");

    // A cache of another sample list is refused.
    let other = cache_of(&model, &samples[..3], CacheDtype::F32, usize::MAX);
    assert!(matches!(
        tasks(&samples, &split).with_cache(other),
        Err(FedError::InvalidConfig { .. })
    ));

    // Evaluation (no dropout) agrees too, token by token.
    let inner = model.valid();
    let a = plain.evaluate(&inner, 0, Split::Test, &[0, 1]).unwrap();
    let b = f32_task.evaluate(&inner, 0, Split::Test, &[0, 1]).unwrap();
    assert_eq!(a.predictions, b.predictions);
    assert_eq!(a.targets, b.targets);
    assert!((a.loss_sum - b.loss_sum).abs() < 1e-4);

    // Gradients of the adapters agree.
    let grads = |task: &VqaTask<B>| {
        B::seed(&Default::default(), 7);
        let loss = task.loss(&model, 0, &rows).unwrap();
        let grads = loss.backward();
        let layer = &model.language_model.decoder.layers[1].self_attn.q_proj;
        let fedvlm::lora::Dense::Lora(lora) = layer else {
            panic!("q_proj carries no adapter")
        };
        lora.lora_b
            .grad(&grads)
            .unwrap()
            .into_data()
            .into_vec::<f32>()
            .unwrap()
    };
    let (g_plain, g_cached) = (grads(&plain), grads(&f32_task));
    let diff = g_plain
        .iter()
        .zip(&g_cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(g_plain.iter().any(|g| g.abs() > 1e-6));
    assert!(diff < 1e-5, "gradient difference {diff}");
}

#[test]
fn a_half_precision_prefix_stays_near_f32_and_recomputes_in_its_own_precision() {
    let _guard = serial();
    let samples = Arc::new(synthetic(8, 3));
    let split = split(1, 6, 2);
    let model = adapted(5);
    let rows = [0usize, 1, 2, 3, 4, 5];
    let reference = loss_of(&tasks(&samples, &split), &model, &rows);
    for (precision, tolerance) in [(Precision::F16, 1e-2), (Precision::Bf16, 5e-2)] {
        let full = cache_in(&model, &samples, CacheDtype::F32, usize::MAX, precision);
        assert_eq!(full.precision(), precision);
        let task = tasks(&samples, &split).with_cache(full.clone()).unwrap();
        let half = loss_of(&task, &model, &rows);
        let gap = (half - reference).abs();
        assert!(
            gap > 0.0 && gap < tolerance * reference.abs(),
            "{precision}: {half} vs {reference}"
        );
        // Over budget, the missing samples are recomputed in the cache's precision: the loss
        // stays the half-precision one (recomputing in f32 would move it towards `reference`).
        let small = cache_in(
            &model,
            &samples,
            CacheDtype::F32,
            full.bytes() / 2,
            precision,
        );
        assert!(!small.is_empty() && small.len() < 8, "{}", small.len());
        let partial = tasks(&samples, &split).with_cache(small).unwrap();
        let mixed = loss_of(&partial, &model, &rows);
        assert!(
            (mixed - half).abs() < 0.1 * gap,
            "{precision}: recomputed {mixed}, cached {half}, f32 {reference}"
        );
    }
}

#[test]
fn the_cache_is_the_same_whatever_the_thread_count_and_budget() {
    let samples = synthetic(9, 4);
    let model = adapted(2);
    let build = |threads: usize, budget: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let all: Vec<usize> = (0..samples.len()).collect();
            let config = CacheConfig {
                batch_size: 2,
                budget_bytes: budget,
                ..CacheConfig::default()
            };
            FrozenPrefixCache::build_from(&model, &samples, &all, &config, &Default::default())
                .unwrap()
        })
    };
    let serial = build(1, usize::MAX);
    assert_eq!(serial.len(), 9);
    assert_eq!(build(3, usize::MAX), serial);
    // Over budget, the same first samples are kept whichever thread computed them.
    let half = build(1, serial.bytes() / 2);
    assert!(!half.is_empty() && half.len() < 9);
    assert_eq!(build(4, serial.bytes() / 2), half);
    for i in 0..9 {
        if let Some(entry) = half.get(i) {
            assert_eq!(Some(entry), serial.get(i));
        }
    }
}

#[test]
fn the_cache_refuses_adapters_outside_the_last_decoder_layer() {
    let model = base_model::<I>();
    let targets = [
        "language_model.decoder.layers.1.self_attn.q_proj",
        "language_model.decoder.layers.0.fc1",
    ];
    let model = model
        .with_adapters(&LoraConfig::paper(), &targets, 1)
        .unwrap();
    let err = check_cacheable(&model).unwrap_err();
    assert!(
        matches!(&err, FedError::UnsupportedLayer(m) if m.contains("decoder.layers.0.fc1")),
        "{err}"
    );
    let samples = synthetic(1, 1);
    assert!(
        FrozenPrefixCache::build(
            &model,
            &samples,
            &[0],
            &CacheConfig::default(),
            &Default::default()
        )
        .is_err()
    );
    // The paper's placement is accepted.
    let paper = base_model::<I>();
    let targets = paper.default_adapter_targets();
    let paper = paper
        .with_adapters(&LoraConfig::paper(), &targets, 1)
        .unwrap();
    check_cacheable(&paper).unwrap();
}

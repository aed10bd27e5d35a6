//! Samples and label shifting, the loss (by hand and against transformers), token scores.

use super::*;

#[test]
fn labels_shift_right_behind_the_decoder_start_token() {
    // transformers' shift_tokens_right: [start, labels[..-1]], -100 -> pad.
    assert_eq!(
        shift_tokens_right(&[0, 11, 30, 79, IGNORE_INDEX, IGNORE_INDEX], 1, 2),
        [2, 0, 11, 30, 79, 1]
    );
    // The fixture's decoder inputs are its labels shifted.
    let io = io();
    let labels = io.ints("labels").0;
    let decoder = io.id_rows("decoder_input_ids");
    for (row, expected) in labels.chunks(6).zip(decoder) {
        assert_eq!(shift_tokens_right(row, 1, 2), expected);
    }
    // Truncation keeps </s>.
    assert_eq!(truncate_ids(&[0, 5, 6, 7, 2], 4).unwrap(), [0, 5, 6, 2]);
    assert_eq!(truncate_ids(&[0, 5, 2], 4).unwrap(), [0, 5, 2]);
    assert!(truncate_ids(&[0, 2], 1).is_err());
    // A batch pads prompts with <pad> (and masks them) and labels with -100.
    let a = VqaSample::new(vec![0.0; 12], 2, &[0, 9, 9, 2], &[0, 5, 6, 2], 8, 8).unwrap();
    let b = VqaSample::new(vec![0.0; 12], 2, &[0, 9, 2], &[0, 7, 2], 8, 8).unwrap();
    let batch = VqaBatch::<I>::new(&[&a, &b], &Default::default()).unwrap();
    let ints = |t: Tensor<I, 2, Int>| t.into_data().convert::<i64>().into_vec::<i64>().unwrap();
    assert_eq!(ints(batch.input_ids), [0, 9, 9, 2, 0, 9, 2, 1]);
    assert_eq!(
        ints(batch.attention_mask.unwrap()),
        [1, 1, 1, 1, 1, 1, 1, 0]
    );
    assert_eq!(ints(batch.labels), [0, 5, 6, 2, 0, 7, 2, -100]);
    assert_eq!(ints(batch.decoder_input_ids), [2, 0, 5, 6, 2, 0, 7, 2]);
    assert!(VqaSample::new(vec![0.0; 11], 2, &[0, 2], &[0, 2], 8, 8).is_err());
}

#[test]
fn the_loss_is_the_mean_over_kept_answer_tokens_computed_by_hand() {
    let device = Default::default();
    let ln2 = 2f32.ln();
    // Softmaxes: [1/3, 1/3, 1/3] and [1/4, 1/2, 1/4]; the last position is padding.
    let logits = Tensor::<I, 3>::from_data(
        TensorData::new(
            vec![0.0, 0.0, 0.0, 0.0, ln2, 0.0, 0.0, ln2, 0.0, 5.0, -3.0, 7.0],
            [2, 2, 3],
        ),
        &device,
    );
    let labels = Tensor::<I, 2, Int>::from_data(
        TensorData::new(vec![0i64, 1, 0, IGNORE_INDEX], [2, 2]),
        &device,
    );
    // (-ln 1/3 - ln 1/2 - ln 1/4) / 3 = ln(24) / 3.
    let expected = 24f64.ln() / 3.0;
    let loss: f32 = masked_cross_entropy(logits.clone(), labels.clone())
        .unwrap()
        .into_scalar();
    assert!(
        (loss as f64 - expected).abs() < 1e-6,
        "{loss} vs {expected}"
    );
    let scored = score_tokens(logits, labels).unwrap();
    assert_eq!(scored.loss_count, 3);
    assert!((scored.loss_sum - 24f64.ln()).abs() < 1e-5);
    // Arg-max tokens of the kept positions (ties go to the first), without the leading `<s>`
    // (id 0 as the first label of both rows): only row 0's second position is scored.
    assert_eq!(scored.targets, [1]);
    assert_eq!(scored.predictions, [1]);
    // Every label ignored: a typed error, not NaN.
    let all_ignored =
        Tensor::<I, 2, Int>::from_data(TensorData::new(vec![IGNORE_INDEX; 4], [2, 2]), &device);
    let logits = Tensor::<I, 3>::zeros([2, 2, 3], &device);
    assert!(matches!(
        masked_cross_entropy(logits, all_ignored),
        Err(FedError::InvalidConfig { .. })
    ));
}

#[test]
fn token_scores_leave_out_the_always_right_leading_bos() {
    let device = Default::default();
    // Labels `<s> 5 6 </s>` and `<s> 7 </s> pad`; the model predicts `<s>` (id 0) everywhere,
    // so the only tokens it gets right are the leading `<s>`.
    let labels = Tensor::<I, 2, Int>::from_data(
        TensorData::new(vec![0i64, 5, 6, 2, 0, 7, 2, IGNORE_INDEX], [2, 4]),
        &device,
    );
    let mut values = vec![0.0f32; 2 * 4 * 8];
    for position in 0..8 {
        values[position * 8] = 5.0;
    }
    let logits = Tensor::<I, 3>::from_data(TensorData::new(values, [2, 4, 8]), &device);
    let scored = score_tokens(logits, labels).unwrap();
    assert_eq!(scored.targets, [5, 6, 2, 7, 2]);
    assert_eq!(scored.predictions, [0; 5]);
    assert_eq!(
        scored.loss_count, 7,
        "the loss still covers every label, <s> included"
    );
    let mut confusion = fedvlm::metrics::ConfusionMatrix::new(8);
    confusion
        .add_batch(&scored.predictions, &scored.targets)
        .unwrap();
    let metrics = confusion
        .metrics(scored.loss_sum, scored.loss_count)
        .unwrap();
    assert_eq!(metrics.accuracy, 0.0);
    assert_eq!(metrics.f1, 0.0);
    // A `<s>` that is not the first label is an ordinary token.
    let labels = Tensor::<I, 2, Int>::from_data(TensorData::new(vec![5i64, 0], [1, 2]), &device);
    let logits = Tensor::<I, 3>::zeros([1, 2, 8], &device);
    assert_eq!(score_tokens(logits, labels).unwrap().targets, [5, 0]);
}

#[test]
fn the_loss_matches_transformers_on_the_fixture() {
    let io = io();
    let device = Default::default();
    for (logits, labels, loss) in [
        ("logits", "labels", "loss"),
        ("padded_logits", "padded_labels", "padded_loss"),
    ] {
        let ours: f32 =
            masked_cross_entropy::<I>(io.float(logits, &device), io.int(labels, &device))
                .unwrap()
                .into_scalar();
        let expected = scalar(loss);
        assert!(
            (ours - expected).abs() < 1e-5,
            "{loss}: {ours} vs {expected}"
        );
    }
}

/// The fixture's prompts, images and labels as samples: the task's own batching, shifting and
/// loss on the model give transformers' losses.
#[test]
fn the_task_loss_on_fixture_samples_matches_transformers() {
    let io = io();
    let pixels = io.float::<I, 4>("pixel_values", &Default::default());
    let pixels = pixels.into_data().into_vec::<f32>().unwrap();
    let per_image = 3 * IMAGE * IMAGE;
    for (prompts, labels, loss) in [
        ("input_ids", "labels", "loss"),
        ("padded_input_ids", "padded_labels", "padded_loss"),
    ] {
        let prompts = io.id_rows(prompts);
        let (labels, _) = io.ints(labels);
        let samples: Vec<VqaSample> = (0..2)
            .map(|i| {
                let prompt: Vec<u32> = prompts[i].iter().copied().filter(|&t| t != 1).collect();
                let answer: Vec<u32> = labels[i * 6..(i + 1) * 6]
                    .iter()
                    .filter(|&&t| t != IGNORE_INDEX)
                    .map(|&t| t as u32)
                    .collect();
                let image = pixels[i * per_image..(i + 1) * per_image].to_vec();
                VqaSample::new(image, IMAGE, &prompt, &answer, 64, 64).unwrap()
            })
            .collect();
        let split = VqaSplit {
            train: vec![vec![0, 1]],
            test: vec![vec![0, 1]],
            global_test: vec![],
        };
        let task = VqaTask::<B>::new(Arc::new(samples), split, VOCAB, &Default::default()).unwrap();
        let model = freeze_all(base_model::<B>(), Sharing::PLora);
        let ours: f32 = task.loss(&model, 0, &[0, 1]).unwrap().into_scalar();
        let expected = scalar(loss);
        assert!(
            (ours - expected).abs() < 1e-4,
            "{loss}: {ours} vs {expected}"
        );
        let scored = task
            .evaluate(&model.valid(), 0, Split::Test, &[0, 1])
            .unwrap();
        // Generation from the same samples (padded prompts masked) gives transformers' ids.
        let expected_ids = if loss == "loss" {
            "greedy_ids"
        } else {
            "padded_greedy_ids"
        };
        let generated = task
            .generate(
                &model.valid(),
                0,
                Split::Test,
                &[0, 1],
                &generation_settings("greedy_ids"),
            )
            .unwrap();
        assert_eq!(generated, io.id_rows(expected_ids), "{expected_ids}");
        let mean = scored.loss_sum / scored.loss_count as f64;
        assert!((mean - expected as f64).abs() < 1e-4, "{loss}: {mean}");
        assert_eq!(scored.loss_count, if loss == "loss" { 12 } else { 10 });
    }
}

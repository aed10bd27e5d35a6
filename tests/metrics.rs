//! Integration tests for `fedvlm::metrics`.

use fedvlm::metrics::{
    ClassificationMetrics, ConfusionMatrix, MetricsError, classification_metrics, masked_loss_sum,
    masked_mean_loss, mean_metrics, token_metrics, weighted_mean_metrics,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn assert_metrics(m: &ClassificationMetrics, acc: f64, p: f64, r: f64, f1: f64) {
    assert!(close(m.accuracy, acc), "accuracy {} != {acc}", m.accuracy);
    assert!(close(m.precision, p), "precision {} != {p}", m.precision);
    assert!(close(m.recall, r), "recall {} != {r}", m.recall);
    assert!(close(m.f1, f1), "f1 {} != {f1}", m.f1);
}

#[test]
fn hand_computed_three_classes() {
    // targets     = [0, 0, 1, 1, 2, 2]
    // predictions = [0, 1, 1, 1, 2, 0]
    // accuracy = 4/6
    // class 0: tp=1, fp=1 (pos 5), fn=1 (pos 1) → p=1/2, r=1/2, f1=1/2
    // class 1: tp=2, fp=1 (pos 1), fn=0         → p=2/3, r=1,   f1=2·(2/3)/(5/3)=4/5
    // class 2: tp=1, fp=0,         fn=1 (pos 5) → p=1,   r=1/2, f1=2·(1/2)/(3/2)=2/3
    // macro p = (1/2+2/3+1)/3 = 13/18; r = (1/2+1+1/2)/3 = 2/3;
    // f1 = (1/2+4/5+2/3)/3 = (15+24+20)/90 = 59/90
    let m = classification_metrics(&[0, 1, 1, 1, 2, 0], &[0, 0, 1, 1, 2, 2], 3, 3.0, 6).unwrap();
    assert_metrics(&m, 4.0 / 6.0, 13.0 / 18.0, 2.0 / 3.0, 59.0 / 90.0);
    assert!(close(m.loss, 0.5));
    assert_eq!(m.count, 6);
}

#[test]
fn class_never_predicted_counts_as_zero() {
    // targets     = [0, 1, 2, 2]
    // predictions = [0, 1, 1, 1]   (class 2 never predicted)
    // class 0: p=1,   r=1, f1=1
    // class 1: tp=1, fp=2 → p=1/3, r=1, f1=2·(1/3)/(4/3)=1/2
    // class 2: tp=0, tp+fp=0 → p=0 (zero_division=0), r=0/2=0, f1=0
    // macro p = (1+1/3+0)/3 = 4/9; r = (1+1+0)/3 = 2/3; f1 = (1+1/2+0)/3 = 1/2; acc = 2/4
    let m = classification_metrics(&[0, 1, 1, 1], &[0, 1, 2, 2], 3, 0.0, 0).unwrap();
    assert_metrics(&m, 0.5, 4.0 / 9.0, 2.0 / 3.0, 0.5);
    assert_eq!(m.loss, 0.0); // loss_count = 0
}

#[test]
fn absent_classes_are_excluded_from_macro_average() {
    // num_classes = 5 but only classes 0 and 3 occur (in targets or predictions).
    // targets = [0, 0, 3], predictions = [0, 3, 3]
    // class 0: p=1, r=1/2, f1=2/3;  class 3: p=1/2, r=1, f1=2/3
    // macro over {0, 3}: p = 3/4, r = 3/4, f1 = 2/3; acc = 2/3
    let m = classification_metrics(&[0, 3, 3], &[0, 0, 3], 5, 0.0, 0).unwrap();
    assert_metrics(&m, 2.0 / 3.0, 0.75, 0.75, 2.0 / 3.0);
}

#[test]
fn class_only_in_predictions_is_included() {
    // targets = [0, 0], predictions = [0, 1]; class 1 appears only in predictions.
    // class 0: p=1, r=1/2, f1=2/3; class 1: tp=0, fp=1 → p=0, r=0 (no support), f1=0
    // macro p = 1/2, r = 1/4, f1 = 1/3; acc = 1/2
    let m = classification_metrics(&[0, 1], &[0, 0], 2, 0.0, 0).unwrap();
    assert_metrics(&m, 0.5, 0.5, 0.25, 1.0 / 3.0);
}

#[test]
fn perfect_predictions_score_one() {
    let t = [0, 1, 2, 3, 1, 2];
    let m = classification_metrics(&t, &t, 4, 1.2, 3).unwrap();
    assert_metrics(&m, 1.0, 1.0, 1.0, 1.0);
    assert!(close(m.loss, 0.4));
}

#[test]
fn confusion_matrix_accumulates_batches() {
    let preds = [0, 1, 1, 1, 2, 0];
    let targets = [0, 0, 1, 1, 2, 2];
    let mut a = ConfusionMatrix::new(3);
    a.add_batch(&preds[..3], &targets[..3]).unwrap();
    let mut b = ConfusionMatrix::new(3);
    for (&p, &t) in preds[3..].iter().zip(&targets[3..]) {
        b.add(p, t).unwrap();
    }
    a.merge(&b).unwrap();
    assert_eq!(a.total(), 6);
    assert_eq!(a.get(2, 0), 1); // target 2 predicted 0
    assert_eq!(a.get(0, 2), 0);
    let whole = classification_metrics(&preds, &targets, 3, 3.0, 6).unwrap();
    assert_eq!(a.metrics(3.0, 6).unwrap(), whole);
}

#[test]
fn errors() {
    assert!(matches!(
        classification_metrics(&[0, 1], &[0], 2, 0.0, 0),
        Err(MetricsError::LengthMismatch {
            left_len: 2,
            right_len: 1,
            ..
        })
    ));
    assert!(matches!(
        classification_metrics(&[0, 2], &[0, 1], 2, 0.0, 0),
        Err(MetricsError::LabelOutOfRange {
            argument: "prediction",
            label: 2,
            num_classes: 2
        })
    ));
    assert!(matches!(
        classification_metrics(&[0, 1], &[0, 5], 2, 0.0, 0),
        Err(MetricsError::LabelOutOfRange {
            argument: "target",
            label: 5,
            ..
        })
    ));
    assert!(matches!(
        classification_metrics(&[], &[], 2, 0.0, 0),
        Err(MetricsError::Empty { .. })
    ));
    let mut m = ConfusionMatrix::new(2);
    assert!(matches!(
        m.merge(&ConfusionMatrix::new(3)),
        Err(MetricsError::ClassCountMismatch { this: 2, other: 3 })
    ));
    // A failing batch leaves the matrix untouched.
    assert!(m.add_batch(&[0, 1, 9], &[0, 1, 1]).is_err());
    assert_eq!(m.total(), 0);
}

#[test]
fn token_metrics_skip_ignored_positions() {
    const PAD: usize = usize::MAX;
    // Two sequences flattened; PAD targets are prompt/padding. Predictions there are
    // garbage (even out of range) and must be ignored.
    let targets = [PAD, PAD, 1, 2, PAD, PAD, 0, 2];
    let predictions = [99, 0, 1, 1, 7, 7, 0, 2];
    // Kept: targets [1, 2, 0, 2], predictions [1, 1, 0, 2]
    // class 0: p=1, r=1, f1=1; class 1: tp=1, fp=1 → p=1/2, r=1, f1=2/3;
    // class 2: tp=1, fn=1 → p=1, r=1/2, f1=2/3
    // macro p = 5/6, r = 5/6, f1 = (1+2/3+2/3)/3 = 7/9; acc = 3/4
    let m = token_metrics(&predictions, &targets, PAD, 3, 2.0, 4).unwrap();
    assert_metrics(&m, 0.75, 5.0 / 6.0, 5.0 / 6.0, 7.0 / 9.0);
    assert_eq!(m.count, 4);
    assert!(close(m.loss, 0.5));

    assert!(matches!(
        token_metrics(&[0, 1], &[0], PAD, 3, 0.0, 0),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        token_metrics(&[0, 1], &[PAD, PAD], PAD, 3, 0.0, 0),
        Err(MetricsError::Empty { .. })
    ));
}

#[test]
fn masked_losses() {
    let ignore = 100;
    let losses = [9.0, 1.0, 2.0, 9.0, 3.0];
    let targets = [100, 4, 5, 100, 6];
    // kept: 1 + 2 + 3 = 6 over 3 positions → mean 2
    assert_eq!(
        masked_loss_sum(&losses, &targets, ignore).unwrap(),
        (6.0, 3)
    );
    assert!(close(
        masked_mean_loss(&losses, &targets, ignore).unwrap(),
        2.0
    ));
    assert!(matches!(
        masked_mean_loss(&losses, &targets[..4], ignore),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        masked_mean_loss(&[1.0], &[100], ignore),
        Err(MetricsError::Empty { .. })
    ));
}

#[test]
fn mean_over_clients() {
    let a = ClassificationMetrics {
        accuracy: 1.0,
        precision: 0.5,
        recall: 0.25,
        f1: 0.0,
        loss: 2.0,
        count: 10,
    };
    let b = ClassificationMetrics {
        accuracy: 0.0,
        precision: 0.5,
        recall: 0.75,
        f1: 1.0,
        loss: 4.0,
        count: 30,
    };
    // Unweighted: each field (a+b)/2; count 10+30.
    let m = mean_metrics(&[a, b]).unwrap();
    assert_metrics(&m, 0.5, 0.5, 0.5, 0.5);
    assert!(close(m.loss, 3.0));
    assert_eq!(m.count, 40);
    // Weighted by count: accuracy (10·1 + 30·0)/40 = 0.25, loss (20 + 120)/40 = 3.5.
    let w = weighted_mean_metrics(&[a, b]).unwrap();
    assert!(close(w.accuracy, 0.25) && close(w.loss, 3.5));
    assert_eq!(mean_metrics(&[]), None);
}

#[test]
fn metrics_serde_roundtrip() {
    let m = classification_metrics(&[0, 1], &[0, 1], 2, 1.0, 2).unwrap();
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains("\"accuracy\":1.0"));
    let back: ClassificationMetrics = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

/// A language model's vocabulary as classes: the matrix is sparse, so this costs what the
/// examples produced (a dense 51,289² matrix of u64 would take 21 GB).
#[test]
fn vocabulary_sized_confusion_matrices_are_sparse() {
    let vocab = 51_289;
    let mut m = ConfusionMatrix::new(vocab);
    m.add_batch(&[7, 7, 51_288, 3], &[7, 9, 51_288, 51_288])
        .unwrap();
    let metrics = m.metrics(0.0, 0).unwrap();
    assert_eq!(m.get(51_288, 3), 1);
    assert_eq!(m.total(), 4);
    assert!((metrics.accuracy - 0.5).abs() < 1e-12);
    // Classes present: 3, 7, 9, 51288. Precision: 0, 1/2, 0, 1 -> 0.375;
    // recall: 0, 1, 0, 1/2 -> 0.375.
    assert!((metrics.precision - 0.375).abs() < 1e-12);
    assert!((metrics.recall - 0.375).abs() < 1e-12);
}

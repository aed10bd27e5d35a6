//! Answer-level metrics against the official VQA evaluation: every case of
//! `tests/fixtures/vqa_eval/cases.json` (computed by `scripts/generate_vqa_eval_fixtures.py`
//! with the official `vqaEval.py`), plus hand-computed published examples.

use fedvlm::metrics::{
    AnswerMetrics, MetricsError, answer_metrics, exact_match, mean_answer_metrics,
    normalize_answer, token_f1, vqa_accuracy, weighted_mean_answer_metrics,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    normalize: Vec<Normalize>,
    pairs: Vec<Pair>,
    vqa_accuracy: Vec<Accuracy>,
}

#[derive(Deserialize)]
struct Normalize {
    input: String,
    normalized: String,
}

#[derive(Deserialize)]
struct Pair {
    prediction: String,
    reference: String,
    exact_match: bool,
    token_f1: f64,
}

#[derive(Deserialize)]
struct Accuracy {
    prediction: String,
    human_answers: Vec<String>,
    accuracy: f64,
}

fn cases() -> Cases {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vqa_eval/cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `k` of ten humans said `yes`, the others `no`.
fn yes_of_ten(k: usize) -> Vec<String> {
    (0..10)
        .map(|i| if i < k { "yes" } else { "no" }.to_string())
        .collect()
}

#[test]
fn normalisation_matches_the_official_evaluation() {
    let cases = cases();
    assert!(cases.normalize.len() >= 100);
    for case in &cases.normalize {
        assert_eq!(
            normalize_answer(&case.input),
            case.normalized,
            "input {:?}",
            case.input
        );
    }
}

#[test]
fn exact_match_and_token_f1_match_the_reference() {
    let cases = cases();
    assert!(cases.pairs.len() >= 20);
    for case in &cases.pairs {
        let (p, r) = (&case.prediction, &case.reference);
        assert_eq!(exact_match(p, r), case.exact_match, "{p:?} vs {r:?}");
        let f1 = token_f1(p, r);
        assert!((f1 - case.token_f1).abs() < 1e-12, "{p:?} vs {r:?}: {f1}");
    }
}

#[test]
fn vqa_accuracy_matches_the_official_evaluation() {
    let cases = cases();
    assert!(cases.vqa_accuracy.len() >= 40);
    for case in &cases.vqa_accuracy {
        let acc = vqa_accuracy(&case.prediction, &case.human_answers).unwrap();
        assert!(
            (acc - case.accuracy).abs() < 1e-12,
            "{:?} vs {:?}: {acc}, official {}",
            case.prediction,
            case.human_answers,
            case.accuracy
        );
    }
}

#[test]
fn published_examples_of_the_leave_one_out_accuracy() {
    // min(#humans / 3, 1) averaged over the ten leave-one-out subsets.
    let expected = [0.0, 0.3, 0.6, 0.9, 1.0, 1.0];
    for (k, want) in expected.into_iter().enumerate() {
        let acc = vqa_accuracy("yes", &yes_of_ten(k)).unwrap();
        assert!((acc - want).abs() < 1e-12, "{k} of 10: {acc}");
    }
    // 3 of 10: leaving out a matching answer gives 2/3, a non-matching one 1.
    let three = vqa_accuracy("yes", &yes_of_ten(3)).unwrap();
    assert!((three - (3.0 * 2.0 / 3.0 + 7.0) / 10.0).abs() < 1e-12);
    // Normalised when the humans disagree...
    assert_eq!(vqa_accuracy("Yes.", &yes_of_ten(4)).unwrap(), 1.0);
    // Three of four humans said "2": leaving one of them out gives 2/3, the "3" 1.
    let four = vqa_accuracy("two", &strings(&["2", "2", "2", "3"])).unwrap();
    assert!(
        (four - (3.0 * 2.0 / 3.0 + 1.0) / 4.0).abs() < 1e-12,
        "{four}"
    );
    // ...but not when all of them gave the same answer (the official code's shortcut).
    assert_eq!(vqa_accuracy("Yes.", &yes_of_ten(10)).unwrap(), 0.0);
    assert_eq!(vqa_accuracy(" yes\n", &yes_of_ten(10)).unwrap(), 1.0);
    assert_eq!(
        vqa_accuracy("yes", &[]),
        Err(MetricsError::Empty {
            argument: "human_answers"
        })
    );
}

#[test]
fn normalisation_examples() {
    for (input, want) in [
        ("Yes.", "yes"),
        ("it's", "it's"),
        ("1,000", "1000"),
        ("a dog", "dog"),
        ("Two", "2"),
        ("don't", "don't"),
        ("dont", "don't"),
        ("2.5", "2.5"),
        ("The U.S.A.", "usa"),
    ] {
        assert_eq!(normalize_answer(input), want, "{input:?}");
    }
    assert!(exact_match("Dont.", "don't"));
    assert!(!exact_match("2.5", "25"));
}

#[test]
fn token_f1_is_squad_style() {
    assert_eq!(token_f1("", ""), 1.0);
    assert_eq!(token_f1("yes", ""), 0.0);
    assert_eq!(token_f1("", "yes"), 0.0);
    assert_eq!(token_f1("cat", "dog"), 0.0);
    assert_eq!(token_f1("The cat.", "a CAT"), 1.0);
    // Multiset overlap: "dog dog cat" and "dog cat cat" share one dog and one cat.
    let f1 = token_f1("dog dog cat", "dog cat cat");
    assert!((f1 - 2.0 / 3.0).abs() < 1e-12, "{f1}");
}

#[test]
fn aggregates_average_answers_and_clients() {
    let predictions = strings(&["yes", "two dogs", "cat"]);
    let references = strings(&["Yes.", "2 dogs", "a dog"]);
    let m = answer_metrics(&predictions, &references, &[]).unwrap();
    assert!((m.exact_match - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.token_f1 - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!((m.vqa_accuracy, m.count, m.vqa_count), (None, 3, 0));

    let humans = vec![yes_of_ten(3), Vec::new(), yes_of_ten(0)];
    let m = answer_metrics(&predictions, &references, &humans).unwrap();
    assert_eq!(m.vqa_count, 2);
    assert!((m.vqa_accuracy.unwrap() - 0.45).abs() < 1e-12);

    assert!(matches!(
        answer_metrics(&predictions, &references[..2], &[]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        answer_metrics(&predictions, &references, &humans[..1]),
        Err(MetricsError::LengthMismatch { .. })
    ));
    assert!(matches!(
        answer_metrics(&[], &[], &[]),
        Err(MetricsError::Empty { .. })
    ));

    let a = AnswerMetrics {
        exact_match: 1.0,
        token_f1: 1.0,
        vqa_accuracy: Some(1.0),
        count: 1,
        vqa_count: 1,
    };
    let b = AnswerMetrics {
        exact_match: 0.0,
        token_f1: 0.5,
        vqa_accuracy: None,
        count: 3,
        vqa_count: 0,
    };
    let mean = mean_answer_metrics(&[a, b]).unwrap();
    assert_eq!((mean.exact_match, mean.token_f1), (0.5, 0.75));
    assert_eq!(
        (mean.vqa_accuracy, mean.count, mean.vqa_count),
        (Some(1.0), 4, 1)
    );
    let pooled = weighted_mean_answer_metrics(&[a, b]).unwrap();
    assert_eq!((pooled.exact_match, pooled.token_f1), (0.25, 0.625));
    assert_eq!(pooled.vqa_accuracy, Some(1.0));
    assert_eq!(mean_answer_metrics(&[]), None);
}

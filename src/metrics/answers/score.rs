//! Scores of one generated answer: exact match, SQuAD-style token F1, VQA accuracy.

use std::collections::HashMap;

use super::normalize::{
    clean_answer, normalize_answer, process_digit_article, process_punctuation,
};
use crate::metrics::MetricsError;

/// Whether `prediction` and `reference` are equal after [`normalize_answer`].
///
/// ```
/// use fedvlm::metrics::exact_match;
/// assert!(exact_match("A dog.", "dog"));
/// assert!(!exact_match("two dogs", "a dog"));
/// ```
#[must_use]
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(reference)
}

/// SQuAD's `f1_score` over the whitespace tokens of the [`normalize_answer`]ed answers: the
/// multiset intersection gives the overlap, `F1 = 2PR / (P + R)`; 1 when both answers have no
/// token, 0 when only one has none or nothing overlaps.
///
/// ```
/// use fedvlm::metrics::token_f1;
/// assert!((token_f1("a red car", "the car is red") - 0.8).abs() < 1e-12);
/// assert_eq!(token_f1("", "the"), 1.0); // both normalise to nothing
/// ```
#[must_use]
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let prediction = normalize_answer(prediction);
    let reference = normalize_answer(reference);
    let p: Vec<&str> = prediction.split(' ').filter(|w| !w.is_empty()).collect();
    let r: Vec<&str> = reference.split(' ').filter(|w| !w.is_empty()).collect();
    if p.is_empty() || r.is_empty() {
        return if p == r { 1.0 } else { 0.0 };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut same = 0usize;
    for w in &p {
        if let Some(n) = counts.get_mut(w).filter(|n| **n > 0) {
            *n -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / p.len() as f64;
    let recall = same as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The official VQA accuracy of `prediction` against the human answers (usually ten), exactly
/// as `VQAEval.evaluate` computes it:
///
/// 1. every answer gets `\n`/`\t` replaced by spaces and is stripped ([`clean_answer`]);
/// 2. only when the human answers are not all the same, the humans' and the prediction get
///    `processPunctuation` + `processDigitArticle` (when all ten agree, the raw stripped
///    prediction must equal their answer: `"Yes"` scores 0 against ten `"yes"`);
/// 3. for each human answer left out in turn, `min(#other humans equal to the prediction / 3, 1)`;
///    the accuracy is the mean over those subsets.
///
/// The reference leaves out answers by comparing whole answer records, which differ in their
/// `answer_id`: each subset leaves out exactly one answer, as here.
///
/// ```
/// use fedvlm::metrics::vqa_accuracy;
/// let humans: Vec<String> = ["yes"; 3].iter().chain(&["no"; 7]).map(|s| s.to_string()).collect();
/// // Leaving out one of the 3 "yes": 2/3; one of the 7 "no": 3/3 = 1.
/// let expected = (3.0 * (2.0 / 3.0) + 7.0) / 10.0;
/// assert!((vqa_accuracy("yes", &humans).unwrap() - expected).abs() < 1e-12);
/// ```
///
/// # Errors
/// [`MetricsError::Empty`] when there is no human answer.
pub fn vqa_accuracy(prediction: &str, human_answers: &[String]) -> Result<f64, MetricsError> {
    if human_answers.is_empty() {
        return Err(MetricsError::Empty {
            argument: "human_answers",
        });
    }
    let mut humans: Vec<String> = human_answers.iter().map(|a| clean_answer(a)).collect();
    let mut prediction = clean_answer(prediction);
    if humans.iter().any(|a| *a != humans[0]) {
        let process = |a: &str| process_digit_article(&process_punctuation(a));
        humans = humans.iter().map(|a| process(a)).collect();
        prediction = process(&prediction);
    }
    let matching = humans.iter().filter(|a| **a == prediction).count();
    let mut sum = 0.0;
    for answer in &humans {
        let others = matching - usize::from(*answer == prediction);
        sum += (others as f64 / 3.0).min(1.0);
    }
    Ok(sum / humans.len() as f64)
}

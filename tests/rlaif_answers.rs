//! Answer-level metrics of the RLAIF-V experiment (library calls): generated answers scored
//! before fine-tuning and after rounds (exact match, token F1, VQA accuracy with human
//! answers), every K rounds, on a limited number of samples, with beam search, or off.

mod common;
#[path = "common/rlaif_fixture.rs"]
mod rlaif_fixture;

use std::sync::Arc;

use fedvlm::FedError;
use fedvlm::Sharing;
use fedvlm::experiments::rlaif::{
    AnswerEvalConfig, AnswerRoundReport, RlaifConfig, RunInputs, run_rule,
};
use fedvlm::experiments::vqa::CacheDtype;
use rlaif_fixture::{Fixture, config, serial};

/// Every scored client's answer metrics are fractions over its test answers.
fn check_answer_round(report: &AnswerRoundReport, test_sizes: &[usize]) {
    assert_eq!(report.clients.len(), test_sizes.len());
    for (k, m) in report.clients.iter().enumerate() {
        let m = m.unwrap_or_else(|| panic!("round {} client {k} not scored", report.round));
        assert_eq!(m.count, test_sizes[k]);
        for v in [m.exact_match, m.token_f1] {
            assert!((0.0..=1.0).contains(&v), "round {}: {m:?}", report.round);
        }
        assert_eq!(m.vqa_accuracy, None, "RLAIF-V has no human answers");
    }
    let mean = report.mean.unwrap();
    assert_eq!(mean.count, test_sizes.iter().sum::<usize>());
}

#[test]
fn generated_answers_are_scored_before_fine_tuning_and_after_rounds() {
    let _serial = serial();
    // Long enough for the tiny model to generate text, not only `<loc_*>` tokens.
    let fixture = Fixture::new(RlaifConfig {
        answers_per_client: usize::MAX,
        answer_max_new_tokens: 8,
        ..config(2)
    });
    let cache = fixture.cache(CacheDtype::F32);
    let run = run_rule(
        &fixture.inputs(Some(cache.clone()), None, false),
        Sharing::PLora,
    )
    .unwrap();
    let test_sizes: Vec<usize> = fixture.data.split.test.iter().map(Vec::len).collect();
    assert_eq!(
        run.answer_metrics
            .iter()
            .map(|r| r.round)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    for report in &run.answer_metrics {
        check_answer_round(report, &test_sizes);
    }
    assert_eq!(run.answers.len(), test_sizes.iter().sum::<usize>());
    assert!(
        run.answers.iter().any(|a| !a.generated.is_empty()),
        "{:?}",
        run.answers
    );

    // References (and ten identical human answers) equal to what the trained models generate:
    // every score of the last round is 1. Training does not read the texts, so it repeats.
    let mut data = (*fixture.data).clone();
    for answer in &run.answers {
        let row = data.split.test[answer.client][answer.example];
        let mut text = data.texts.get(row).unwrap();
        text.answer = answer.generated.clone();
        text.human_answers = vec![answer.generated.clone(); 10];
        data.texts.set(row, text).unwrap();
    }
    let inputs = RunInputs {
        data: Arc::new(data),
        ..fixture.inputs(Some(cache.clone()), None, false)
    };
    let same = run_rule(&inputs, Sharing::PLora).unwrap();
    let generated = |answers: &[fedvlm::experiments::rlaif::GeneratedAnswer]| {
        answers
            .iter()
            .map(|a| a.generated.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(generated(&same.answers), generated(&run.answers));
    let last = same.answer_metrics.last().unwrap();
    assert_eq!(last.round, 2);
    for m in last.clients.iter().chain(std::iter::once(&last.mean)) {
        let m = m.unwrap();
        assert_eq!(
            (m.exact_match, m.token_f1, m.vqa_accuracy),
            (1.0, 1.0, Some(1.0))
        );
    }
    // A reference no generated answer contains scores 0 on every count.
    let mut data = (*fixture.data).clone();
    for answer in &run.answers {
        assert!(!answer.generated.contains("zebra"));
        let row = data.split.test[answer.client][answer.example];
        let mut text = data.texts.get(row).unwrap();
        text.answer = "zebra".to_string();
        text.human_answers = vec!["zebra".to_string(); 10];
        data.texts.set(row, text).unwrap();
    }
    let inputs = RunInputs {
        data: Arc::new(data),
        ..fixture.inputs(Some(cache.clone()), None, false)
    };
    let other = run_rule(&inputs, Sharing::PLora).unwrap();
    let last = other.answer_metrics.last().unwrap().mean.unwrap();
    assert_eq!(
        (last.exact_match, last.token_f1, last.vqa_accuracy),
        (0.0, 0.0, Some(0.0))
    );

    // Every other round, one sample per client, beam search: rounds 0, 2 and the last (3).
    let sparse = Fixture::new(RlaifConfig {
        answer_eval: AnswerEvalConfig {
            every: 2,
            limit: Some(1),
            num_beams: 2,
        },
        ..config(3)
    });
    let run = run_rule(&sparse.inputs(None, None, false), Sharing::PLora).unwrap();
    assert_eq!(
        run.answer_metrics
            .iter()
            .map(|r| r.round)
            .collect::<Vec<_>>(),
        [0, 2, 3]
    );
    for report in &run.answer_metrics {
        check_answer_round(report, &[1, 1]);
    }
    // Off.
    let off = Fixture::new(RlaifConfig {
        answer_eval: AnswerEvalConfig {
            every: 0,
            ..AnswerEvalConfig::default()
        },
        ..config(1)
    });
    let run = run_rule(&off.inputs(None, None, false), Sharing::PLora).unwrap();
    assert!(run.answer_metrics.is_empty());
    assert!(matches!(
        RlaifConfig {
            answer_eval: AnswerEvalConfig {
                num_beams: 0,
                ..AnswerEvalConfig::default()
            },
            ..config(1)
        }
        .validate(),
        Err(FedError::InvalidConfig { .. })
    ));
}

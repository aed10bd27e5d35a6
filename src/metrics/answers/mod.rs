//! Answer-level metrics of generated answers: exact match after the official VQA evaluation's
//! normalisation ([`normalize_answer`]), SQuAD-style token F1 ([`token_f1`]) and the VQA
//! accuracy against human answers with its leave-one-out average ([`vqa_accuracy`]), and their
//! means over samples ([`answer_metrics`]) and clients ([`mean_answer_metrics`]).

mod aggregate;
mod normalize;
mod score;

pub use aggregate::{
    AnswerMetrics, AnswerScore, answer_metrics, mean_answer_metrics, weighted_mean_answer_metrics,
};
pub use normalize::{
    ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCT, clean_answer, normalize_answer,
    process_digit_article, process_punctuation,
};
pub use score::{exact_match, token_f1, vqa_accuracy};

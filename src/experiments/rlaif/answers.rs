//! Answer-level evaluation of the experiment: every client's personalised model generates
//! answers for its test samples (greedy, or beam search with [`AnswerEvalConfig::num_beams`]),
//! scored against the reference with [`crate::metrics::exact_match`] and
//! [`crate::metrics::token_f1`], and against the sample's human answers, when it has some, with
//! [`crate::metrics::vqa_accuracy`]. Before fine-tuning (round 0) and every
//! [`AnswerEvalConfig::every`] rounds, one [`AnswerRoundReport`] a line in
//! [`ANSWER_METRICS_FILE`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use super::pipeline::RunInputs;
use crate::Simulation;
use crate::error::{FedError, Result};
use crate::experiments::vqa::VqaTask;
use crate::federated::Split;
use crate::metrics::{AnswerMetrics, AnswerScore, mean_answer_metrics};
use crate::models::florence2::GenerationConfig;
use crate::strategy::Strategy;

/// The answer-level metrics of a rule's run, one [`AnswerRoundReport`] a line.
pub const ANSWER_METRICS_FILE: &str = "answer_metrics.jsonl";

/// Settings of the answer-level evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerEvalConfig {
    /// Score before fine-tuning, every `every` rounds and after the last round; 0 turns the
    /// answer-level evaluation off.
    pub every: u64,
    /// Score only each client's first `limit` test samples; `None` scores all.
    pub limit: Option<usize>,
    /// Beams of the generation (1: greedy). Also used for the answers written after the last
    /// round.
    pub num_beams: usize,
}

impl Default for AnswerEvalConfig {
    fn default() -> Self {
        Self {
            every: 1,
            limit: None,
            num_beams: 1,
        }
    }
}

impl AnswerEvalConfig {
    /// Whether round `round` of `rounds` is scored.
    pub fn due(&self, round: u64, rounds: u64) -> bool {
        self.every > 0 && (round.is_multiple_of(self.every) || round == rounds)
    }

    /// How many of each client's first test samples the evaluation generates answers for
    /// (`usize::MAX` for all), given that `answers_per_client` are generated anyway.
    pub fn test_samples_needed(&self, answers_per_client: usize) -> usize {
        if self.every == 0 {
            answers_per_client
        } else {
            answers_per_client.max(self.limit.unwrap_or(usize::MAX))
        }
    }

    /// `generation` with these beams and `max_new_tokens`.
    pub fn generation(
        &self,
        generation: &GenerationConfig,
        max_new_tokens: usize,
    ) -> GenerationConfig {
        GenerationConfig {
            num_beams: self.num_beams,
            max_new_tokens,
            ..generation.clone()
        }
    }

    /// Checks the beams.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for zero beams.
    pub fn validate(&self) -> Result<()> {
        if self.num_beams == 0 {
            return Err(FedError::config("num_beams", "must be at least 1"));
        }
        Ok(())
    }
}

/// The answer-level metrics of one round: per client (`None`: no test sample) and their
/// unweighted mean (as the paper's tables average clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRoundReport {
    /// The round (0: before fine-tuning).
    pub round: u64,
    /// Per client, its personalised model's answers on its test split.
    pub clients: Vec<Option<AnswerMetrics>>,
    /// Unweighted mean over the clients that were scored.
    pub mean: Option<AnswerMetrics>,
}

/// Every client's personalised model answers its first test samples (per
/// [`AnswerEvalConfig::limit`]); the texts, special tokens removed and trimmed, in test-split
/// order.
///
/// # Errors
/// [`FedError::InvalidConfig`] when a sample to answer has no pixels (dropped for the cache:
/// keep [`AnswerEvalConfig::test_samples_needed`]), and the model's and tokenizer's errors.
pub fn generate_texts<B: AutodiffBackend, S: Strategy>(
    sim: &Simulation<B, VqaTask<B>, S>,
    inputs: &RunInputs<'_, B>,
    client: usize,
    count: usize,
    generation: &GenerationConfig,
) -> Result<Vec<String>> {
    let task = sim.task();
    let n = task.split().test.get(client).map_or(0, Vec::len).min(count);
    if n == 0 {
        return Ok(Vec::new());
    }
    let model = sim.personalized_model(client)?;
    let examples: Vec<usize> = (0..n).collect();
    let mut texts = Vec::with_capacity(n);
    for batch in examples.chunks(inputs.config.eval_batch_size.max(1)) {
        let rows = task.rows(client, Split::Test, batch)?;
        if let Some(&row) = rows
            .iter()
            .find(|&&r| !task.samples()[r].image.is_present())
        {
            return Err(FedError::config(
                "answer_eval",
                format!(
                    "test sample {row} of client {client} has no pixels (freed for the cache); \
                     keep the pixels of the samples the answer evaluation uses"
                ),
            ));
        }
        for ids in task.generate(&model, client, Split::Test, batch, generation)? {
            let text = inputs
                .processor
                .tokenizer()
                .decode(&ids, true)
                .map_err(|e| FedError::Task(format!("decoding an answer: {e}")))?;
            texts.push(text.trim().to_string());
        }
    }
    Ok(texts)
}

/// Scores every client's generated answers (see the module documentation) for round `round`.
///
/// # Errors
/// As [`generate_texts`].
pub fn evaluate_answers<B: AutodiffBackend, S: Strategy>(
    sim: &Simulation<B, VqaTask<B>, S>,
    inputs: &RunInputs<'_, B>,
    round: u64,
) -> Result<AnswerRoundReport> {
    let config = inputs.config;
    let eval = &config.answer_eval;
    let generation = eval.generation(&inputs.generation, config.answer_max_new_tokens);
    let limit = eval.limit.unwrap_or(usize::MAX);
    let mut clients = Vec::new();
    for client in 0..inputs.data.num_trainers() {
        let texts = generate_texts(sim, inputs, client, limit, &generation)?;
        let examples: Vec<usize> = (0..texts.len()).collect();
        let rows = sim.task().rows(client, Split::Test, &examples)?;
        let scores: Vec<AnswerScore> = texts
            .iter()
            .zip(rows)
            .map(|(text, row)| {
                let sample = inputs.data.texts.get(row)?;
                Ok(AnswerScore::new(
                    text,
                    &sample.answer,
                    &sample.human_answers,
                ))
            })
            .collect::<Result<_>>()?;
        clients.push(AnswerMetrics::from_scores(&scores).ok());
    }
    let scored: Vec<AnswerMetrics> = clients.iter().flatten().copied().collect();
    Ok(AnswerRoundReport {
        round,
        mean: mean_answer_metrics(&scored),
        clients,
    })
}

/// The [`ANSWER_METRICS_FILE`] of a run, kept in step with its checkpoint: on resume, the
/// reports of rounds that run again are dropped.
#[derive(Debug)]
pub struct AnswerLog {
    path: Option<PathBuf>,
    previous: Vec<AnswerRoundReport>,
    reports: Vec<AnswerRoundReport>,
    started: bool,
    file: Option<File>,
}

impl AnswerLog {
    /// A log writing to `path` (`None`: in memory only); with `resume`, the reports already in
    /// that file are kept for the rounds that do not run again.
    ///
    /// # Errors
    /// I/O and JSON errors reading a previous file.
    pub fn open(path: Option<&Path>, resume: bool) -> Result<Self> {
        let mut previous = Vec::new();
        if let Some(path) = path.filter(|p| resume && p.is_file()) {
            let text = std::fs::read_to_string(path).map_err(|e| FedError::io(path, e))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                previous.push(serde_json::from_str(line)?);
            }
        }
        Ok(Self {
            path: path.map(Path::to_path_buf),
            previous,
            reports: Vec::new(),
            started: false,
            file: None,
        })
    }

    /// Called for every new round, scored or not: the first call keeps the previous reports
    /// before `round` and rewrites the file with them.
    ///
    /// # Errors
    /// I/O errors.
    pub fn start_round(&mut self, round: u64) -> Result<()> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.previous.retain(|r| r.round < round);
        self.reports = std::mem::take(&mut self.previous);
        if let Some(path) = &self.path {
            let mut file = File::create(path).map_err(|e| FedError::io(path, e))?;
            for report in &self.reports {
                writeln!(file, "{}", serde_json::to_string(report)?)
                    .map_err(|e| FedError::io(path, e))?;
            }
            self.file = Some(file);
        }
        Ok(())
    }

    /// Appends one report.
    ///
    /// # Errors
    /// I/O errors.
    pub fn record(&mut self, report: AnswerRoundReport) -> Result<()> {
        self.start_round(report.round)?;
        if let (Some(file), Some(path)) = (&mut self.file, &self.path) {
            writeln!(file, "{}", serde_json::to_string(&report)?)
                .and_then(|()| file.flush())
                .map_err(|e| FedError::io(path, e))?;
        }
        self.reports.push(report);
        Ok(())
    }

    /// Called after every new round: starts it ([`Self::start_round`]) and, when the round is
    /// due ([`AnswerEvalConfig::due`]), scores it ([`evaluate_answers`]) and records it.
    ///
    /// # Errors
    /// As [`evaluate_answers`], and I/O errors.
    pub fn after_round<B: AutodiffBackend, S: Strategy>(
        &mut self,
        sim: &Simulation<B, VqaTask<B>, S>,
        inputs: &RunInputs<'_, B>,
        round: u64,
    ) -> Result<()> {
        self.start_round(round)?;
        if inputs.config.answer_eval.due(round, inputs.config.rounds) {
            self.record(evaluate_answers(sim, inputs, round)?)?;
        }
        Ok(())
    }

    /// Every report in round order, the kept previous ones first (when no round ran, the
    /// previous reports up to `last_round`).
    pub fn finish(mut self, last_round: u64) -> Vec<AnswerRoundReport> {
        if !self.started {
            self.previous.retain(|r| r.round <= last_round);
            return self.previous;
        }
        self.reports
    }
}

/// Writes `<path>` (CSV): one row per (run, round, client) and one per (run, round) with
/// client `mean`: exact match, token F1, VQA accuracy (empty without human answers) and the
/// number of answers scored.
///
/// # Errors
/// I/O errors naming the file.
pub fn write_answer_csv(path: &Path, runs: &[(&str, &[AnswerRoundReport])]) -> Result<()> {
    let mut out = String::from("run,round,client,exact_match,token_f1,vqa_accuracy,count\n");
    let mut row = |run: &str, round: u64, client: &str, m: &AnswerMetrics| {
        let vqa = m.vqa_accuracy.map_or(String::new(), |v| v.to_string());
        out.push_str(&format!(
            "{run},{round},{client},{},{},{vqa},{}\n",
            m.exact_match, m.token_f1, m.count
        ));
    };
    for (run, reports) in runs {
        for report in *reports {
            for (k, m) in report.clients.iter().enumerate() {
                if let Some(m) = m {
                    row(run, report.round, &k.to_string(), m);
                }
            }
            if let Some(m) = &report.mean {
                row(run, report.round, "mean", m);
            }
        }
    }
    std::fs::write(path, out).map_err(|e| FedError::io(path, e))
}

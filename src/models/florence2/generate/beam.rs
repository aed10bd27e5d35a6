//! Beam search, step for step as transformers 5's `_beam_search`: `2 * num_beams` candidates
//! per input from the accumulated log-probabilities, the best `num_beams` unfinished ones run
//! on, finished ones enter a length-normalised pool of `num_beams` hypotheses, and the loop
//! ends by the early-stopping rule or the maximum length. Scores are f32 with the same
//! operations (and the same `-1e9` masks) as the reference, so equal inputs pick equal beams.

use burn::prelude::*;

use super::config::{EarlyStopping, GenerationConfig};
use super::processors::{log_softmax, process, top_k};
use super::stepper::Stepper;
use crate::error::Result;

/// transformers' "very large negative" score.
const NEG: f32 = -1.0e9;

/// One hypothesis: its ids (`max_length` slots, unfilled ones hold the fill id) and the origin
/// row of each generated token (-1 where none was generated).
#[derive(Clone)]
struct Hypothesis {
    ids: Vec<u32>,
    origins: Vec<i64>,
}

/// The search state of one input.
struct Input {
    /// Running beams and their accumulated log-probabilities.
    running: Vec<Hypothesis>,
    running_scores: Vec<f32>,
    /// The pool of finished hypotheses (initially fillers scored -1e9) and their scores.
    finished: Vec<Hypothesis>,
    finished_scores: Vec<f32>,
    is_finished: Vec<bool>,
    /// Whether a running beam may still beat the pool.
    improvable: bool,
}

/// Runs beam search for `batch` inputs whose encoder rows the stepper holds `num_beams`
/// times each (input-major). Returns the best finished hypothesis of each input, cut to the
/// longest generated length and padded with the fill id.
pub(crate) fn beam_search<B: Backend>(
    stepper: &mut Stepper<'_, B>,
    batch: usize,
    config: &GenerationConfig,
) -> Result<Vec<Vec<u32>>> {
    let beams = config.num_beams;
    let candidates = 2 * beams;
    let prompt_len = 1;
    let max_length = prompt_len + config.max_new_tokens;
    let lp = config.length_penalty;
    // transformers: `pad_token_id or eos_token_id[0]` (a pad id of 0 counts as missing).
    let fill = match (config.effective_pad_token_id(), config.eos_token_id) {
        (Some(pad), _) if pad != 0 => pad,
        (_, Some(eos)) => eos,
        (pad, None) => pad.unwrap_or(0),
    };
    let blank = |first: u32| {
        let mut ids = vec![fill; max_length];
        ids[0] = first;
        Hypothesis {
            ids,
            origins: vec![-1; max_length - prompt_len],
        }
    };
    let start = blank(config.decoder_start_token_id);
    let mut inputs: Vec<Input> = (0..batch)
        .map(|_| Input {
            running: vec![start.clone(); beams],
            running_scores: (0..beams).map(|j| if j == 0 { 0.0 } else { NEG }).collect(),
            finished: vec![start.clone(); beams],
            finished_scores: vec![NEG; beams],
            is_finished: vec![false; beams],
            improvable: true,
        })
        .collect();

    let mut cur_len = prompt_len;
    loop {
        let sequences: Vec<Vec<u32>> = inputs
            .iter()
            .flat_map(|input| input.running.iter().map(|h| h.ids[..cur_len].to_vec()))
            .collect();
        let logits = stepper.next_logits(&sequences)?;
        let vocab = logits.first().map_or(0, Vec::len);
        let mut all_hit = true;
        let mut reorder = Vec::with_capacity(batch * beams);
        for (b, input) in inputs.iter_mut().enumerate() {
            // Accumulated log-probabilities of every (beam, token) continuation.
            let mut accumulated = Vec::with_capacity(beams * vocab);
            for j in 0..beams {
                let mut row = logits[b * beams + j].clone();
                log_softmax(&mut row);
                process(&mut row, &sequences[b * beams + j], max_length, config);
                let base = input.running_scores[j];
                accumulated.extend(row.into_iter().map(|x| x + base));
            }
            let top = top_k(accumulated, candidates);
            let mut cands = Vec::with_capacity(candidates);
            let mut hits = Vec::with_capacity(candidates);
            for &(_, index) in &top {
                let (beam, token) = (index / vocab, (index % vocab) as u32);
                let mut h = input.running[beam].clone();
                h.ids[cur_len] = token;
                h.origins[cur_len - prompt_len] = (b * beams + beam) as i64;
                hits.push(cur_len + 1 >= max_length || config.eos_token_id == Some(token));
                cands.push(h);
            }
            all_hit &= hits.iter().all(|&h| h);
            let top_scores: Vec<f32> = top.iter().map(|&(s, _)| s).collect();

            // Best unfinished continuations run on.
            let masked = top_scores
                .iter()
                .zip(&hits)
                .map(|(&s, &hit)| s + if hit { NEG } else { 0.0 });
            let keep = top_k(masked, beams);
            input.running = keep.iter().map(|&(_, k)| cands[k].clone()).collect();
            input.running_scores = keep.iter().map(|&(s, _)| s).collect();
            reorder.extend(
                input
                    .running
                    .iter()
                    .map(|h| h.origins[cur_len - prompt_len] as usize),
            );

            // Newly finished hypotheses among the first `beams` candidates enter the pool.
            let norm = (((cur_len + 1 - prompt_len) as f64).powf(lp)) as f32;
            let full = input.is_finished.iter().all(|&f| f)
                && config.early_stopping == EarlyStopping::Enabled;
            let mut merged_scores = input.finished_scores.clone();
            let mut merged_finished = input.is_finished.clone();
            for (k, &score) in top_scores.iter().enumerate() {
                let just_finished = hits[k] && k < beams;
                let mut s = score / norm;
                s += if full { NEG } else { 0.0 };
                s += if input.improvable { 0.0 } else { NEG };
                s += if just_finished { 0.0 } else { NEG };
                merged_scores.push(s);
                merged_finished.push(just_finished);
            }
            let best = top_k(merged_scores, beams);
            let pool: Vec<Hypothesis> = best
                .iter()
                .map(|&(_, m)| {
                    if m < beams {
                        input.finished[m].clone()
                    } else {
                        cands[m - beams].clone()
                    }
                })
                .collect();
            input.is_finished = best.iter().map(|&(_, m)| merged_finished[m]).collect();
            input.finished_scores = best.iter().map(|&(s, _)| s).collect();
            input.finished = pool;
        }
        stepper.reorder(&reorder)?;
        cur_len += 1;

        // Can a running beam still beat the worst finished hypothesis?
        let best_len = if config.early_stopping == EarlyStopping::Never && lp > 0.0 {
            max_length - prompt_len
        } else {
            cur_len - prompt_len
        };
        let norm = ((best_len as f64).powf(lp)) as f32;
        for input in &mut inputs {
            let best_possible = input.running_scores[0] / norm;
            let worst = input
                .finished_scores
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            let beatable = input
                .is_finished
                .iter()
                .any(|&f| best_possible > if f { worst } else { NEG });
            input.improvable = input.improvable && beatable;
        }
        let improvable = inputs.iter().any(|i| i.improvable);
        let all_done = inputs.iter().all(|i| i.is_finished.iter().all(|&f| f))
            && config.early_stopping == EarlyStopping::Enabled;
        if !(improvable && !all_done && !all_hit) {
            break;
        }
    }

    let generated = |h: &Hypothesis| h.origins.iter().filter(|&&o| o != -1).count();
    let out_len = prompt_len
        + inputs
            .iter()
            .map(|i| generated(&i.finished[0]))
            .max()
            .unwrap_or(0);
    Ok(inputs
        .into_iter()
        .map(|i| i.finished[0].ids[..out_len].to_vec())
        .collect())
}

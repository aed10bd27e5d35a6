//! [`CohortTally`]: each cohort member's running training loss and first failure, and the
//! outcomes they make at the end of the round.

use super::CohortOutcome;
use crate::error::{FedError, Result};

/// Each member's loss sum and example count over the round, and its first failure (a failed
/// member trains no further and reports its error; the others go on).
#[derive(Debug)]
pub struct CohortTally {
    sums: Vec<(f64, usize)>,
    failures: Vec<Option<FedError>>,
}

impl CohortTally {
    /// A tally of `members` members, in the cohort's (sorted) order.
    pub fn new(members: usize) -> Self {
        Self {
            sums: vec![(0.0, 0); members],
            failures: (0..members).map(|_| None).collect(),
        }
    }

    /// Each member's failure so far (to set while building a step's inputs).
    pub fn failures_mut(&mut self) -> &mut [Option<FedError>] {
        &mut self.failures
    }

    /// Adds each member's batch loss (its mean times its examples, as the sequential client
    /// counts it); a non-finite loss fails the member. Member `c` had `batches[c]` this step
    /// and is client `clients[c]`; members that failed before, or had no batch, are skipped.
    pub fn record<R: AsRef<[usize]>>(
        &mut self,
        losses: &[f32],
        batches: &[R],
        clients: &[usize],
        round: u64,
    ) {
        for (c, (&loss, batch)) in losses.iter().zip(batches).enumerate() {
            let examples = batch.as_ref().len();
            if self.failures[c].is_some() || examples == 0 {
                continue;
            }
            if loss.is_finite() {
                self.sums[c].0 += loss as f64 * examples as f64;
                self.sums[c].1 += examples;
            } else {
                self.failures[c] = Some(FedError::Task(format!(
                    "client {} round {round}: non-finite training loss {loss}",
                    clients[c]
                )));
            }
        }
    }

    /// The outcomes in the members' original order: member `j` of the sorted cohort (the
    /// original member `order[j]`) gets its failure, or `model(j)` and its mean training loss
    /// (0 without examples).
    pub fn outcomes<M>(
        mut self,
        order: &[usize],
        mut model: impl FnMut(usize) -> M,
    ) -> Vec<Result<CohortOutcome<M>>> {
        let mut outcomes: Vec<Option<Result<CohortOutcome<M>>>> =
            (0..order.len()).map(|_| None).collect();
        for (j, &original) in order.iter().enumerate() {
            let outcome = match self.failures.get_mut(j).and_then(Option::take) {
                Some(error) => Err(error),
                None => {
                    let (sum, count) = self.sums.get(j).copied().unwrap_or((0.0, 0));
                    Ok(CohortOutcome {
                        model: model(j),
                        train_loss: if count > 0 { sum / count as f64 } else { 0.0 },
                    })
                }
            };
            if let Some(slot) = outcomes.get_mut(original) {
                *slot = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(FedError::Task("a member was not trained".into()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_average_per_member_and_outcomes_return_in_the_original_order() {
        let mut tally = CohortTally::new(3);
        tally.record(
            &[1.0, 2.0, 4.0],
            &[vec![0, 1], vec![2], vec![]],
            &[7, 8, 9],
            1,
        );
        tally.record(&[3.0, f32::NAN], &[vec![3], vec![4]], &[7, 8, 9], 1);
        // A member that failed stays failed; later losses do not count.
        tally.record(&[0.0, 5.0], &[vec![5], vec![6]], &[7, 8, 9], 1);
        tally.failures_mut()[2] = Some(FedError::Task("row past the data".into()));
        // Sorted member j is original member order[j].
        let outcomes = tally.outcomes(&[2, 0, 1], |j| j * 10);
        let first = outcomes[2].as_ref().unwrap();
        assert_eq!(
            (first.model, first.train_loss),
            (0, (2.0 + 3.0 + 0.0) / 4.0)
        );
        let failed = outcomes[0].as_ref().err().unwrap().to_string();
        assert!(failed.contains("client 8 round 1: non-finite"), "{failed}");
        assert!(
            outcomes[1]
                .as_ref()
                .err()
                .unwrap()
                .to_string()
                .contains("row past")
        );
    }
}

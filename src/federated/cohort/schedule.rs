//! Which examples each client trains on at each step: the batches the sequential client draws,
//! laid out step by step for a cohort.

use rand::seq::SliceRandom;
use rand::{SeedableRng, rngs::ChaCha8Rng};

use crate::federated::client::ClientConfig;
use crate::seed::mix_seed;

/// Shuffles `order` in place for `epoch` of `client` in `round`: the order every epoch of local
/// training draws its batches from (the previous epoch's order, shuffled again).
pub fn shuffle_epoch(order: &mut [usize], seed: u64, round: u64, client: usize, epoch: usize) {
    let seed = mix_seed(&[seed, round, client as u64, 3, epoch as u64]);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
}

/// Every training batch of `client` (holding `n` examples) in `round`, epoch after epoch, in
/// the order the client trains on them.
pub fn client_batches(
    n: usize,
    config: &ClientConfig,
    round: u64,
    client: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut batches = Vec::new();
    for epoch in 0..config.local_epochs {
        shuffle_epoch(&mut order, config.seed, round, client, epoch);
        batches.extend(
            order
                .chunks(config.batch_size.max(1))
                .map(<[usize]>::to_vec),
        );
    }
    batches
}

/// The steps of a cohort: members sorted by their number of steps (most first), so that at
/// every step the members still training are a prefix of the sorted order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CohortSchedule {
    /// Member positions (indices into the members as given), most steps first.
    pub order: Vec<usize>,
    /// Each sorted member's batches, in training order.
    pub batches: Vec<Vec<Vec<usize>>>,
}

/// The rows of one step: for each member still training (in sorted order), its batch.
pub type StepRows<'a> = Vec<&'a [usize]>;

impl CohortSchedule {
    /// The schedule of members `(client, training examples)` in `round`.
    pub fn new(members: &[(usize, usize)], config: &ClientConfig, round: u64) -> Self {
        let batches: Vec<Vec<Vec<usize>>> = members
            .iter()
            .map(|&(client, n)| client_batches(n, config, round, client))
            .collect();
        let mut order: Vec<usize> = (0..members.len()).collect();
        // Stable: equal step counts keep the members' order.
        order.sort_by_key(|&i| std::cmp::Reverse(batches[i].len()));
        let mut sorted = Vec::with_capacity(batches.len());
        let mut batches: Vec<Option<Vec<Vec<usize>>>> = batches.into_iter().map(Some).collect();
        for &i in &order {
            sorted.push(batches[i].take().unwrap_or_default());
        }
        Self {
            order,
            batches: sorted,
        }
    }

    /// Number of steps: the longest member's.
    pub fn steps(&self) -> usize {
        self.batches.first().map_or(0, Vec::len)
    }

    /// How many members (a prefix of the sorted order) train at `step`.
    pub fn active(&self, step: usize) -> usize {
        self.batches.partition_point(|b| b.len() > step)
    }

    /// The batches of `step`, one per active member.
    pub fn rows(&self, step: usize) -> StepRows<'_> {
        self.batches[..self.active(step)]
            .iter()
            .map(|b| b[step].as_slice())
            .collect()
    }

    /// The largest batch of `step`.
    pub fn width(&self, step: usize) -> usize {
        self.rows(step).iter().map(|r| r.len()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(epochs: usize, batch: usize) -> ClientConfig {
        ClientConfig {
            local_epochs: epochs,
            batch_size: batch,
            micro_batch_size: None,
            eval_batch_size: 8,
            lr: 0.1,
            optimizer: Default::default(),
            keep_optimizer_state: false,
            seed: 7,
        }
    }

    #[test]
    fn members_with_fewer_steps_drop_out_as_a_suffix() {
        let cfg = config(2, 4);
        // 10 examples: 3 steps an epoch; 3 examples: 1; 8: 2.
        let s = CohortSchedule::new(&[(0, 3), (1, 10), (2, 8)], &cfg, 1);
        assert_eq!(s.order, vec![1, 2, 0]);
        assert_eq!(s.steps(), 6);
        assert_eq!(s.active(0), 3);
        assert_eq!(s.active(1), 3);
        assert_eq!(s.active(2), 2);
        assert_eq!(s.active(3), 2);
        assert_eq!(s.active(4), 1);
        assert_eq!(s.active(6), 0);
        // Client 1's last batch of an epoch is short.
        assert_eq!(s.rows(2)[0].len(), 2);
        assert_eq!(s.width(2), 4);
        // Every example once per epoch, in the order client_batches gives.
        let mut first: Vec<usize> = s.batches[0][..3].concat();
        first.sort_unstable();
        assert_eq!(first, (0..10).collect::<Vec<_>>());
        assert_eq!(s.batches[0], client_batches(10, &cfg, 1, 1));
    }

    #[test]
    fn orders_depend_on_round_client_and_epoch() {
        let cfg = config(2, 100);
        let a = client_batches(20, &cfg, 1, 0);
        assert_ne!(a[0], a[1], "epochs reshuffle");
        assert_ne!(a, client_batches(20, &cfg, 2, 0));
        assert_ne!(a, client_batches(20, &cfg, 1, 1));
    }
}

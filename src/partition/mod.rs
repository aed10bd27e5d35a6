//! Seeded, deterministic federated data partitioners.
//!
//! Every partitioner returns one index list per client (`Vec<Vec<usize>>`, indexed by
//! client id), where each index points into the caller's dataset. Unless stated
//! otherwise, **each client's list is sorted ascending**, the lists are pairwise
//! disjoint and their union is exactly `0..num_samples`.
//!
//! Randomised partitioners draw from a [`ChaCha8Rng`] seeded with
//! [`SeedableRng::seed_from_u64`], so the same arguments and seed always produce the same
//! split on every platform.
//!
//! | function | scheme |
//! |---|---|
//! | [`iid`] | uniform shuffle, near-equal parts |
//! | [`label_shards`] | McMahan et al. 2017 sort-and-shard non-IID split |
//! | [`dirichlet`] | Hsu et al. 2019 per-class Dir(α) split (flwr-datasets `DirichletPartitioner`) |
//! | [`pathological`] | k distinct classes per client |
//! | [`by_key`] | one client per distinct key (natural partition) |
//! | [`train_test_split`] | seeded per-client train/test split |

mod by_key;
mod dirichlet;
mod error;
mod iid;
mod pathological;
mod shards;
mod split;

pub use by_key::by_key;
pub use dirichlet::{DIRICHLET_MAX_TRIES, dirichlet};
pub use error::{PartitionError, Result};
pub use iid::iid;
pub use pathological::pathological;
pub use shards::label_shards;
pub use split::train_test_split;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

/// Number of indices held by each client, in client order.
#[must_use]
pub fn sizes(parts: &[Vec<usize>]) -> Vec<usize> {
    parts.iter().map(Vec::len).collect()
}

/// The deterministic generator every partitioner uses for `seed`.
pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Sample indices grouped by label, in ascending label order; each group ascending.
pub(crate) fn indices_by_class(labels: &[usize]) -> BTreeMap<usize, Vec<usize>> {
    let mut classes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &label) in labels.iter().enumerate() {
        classes.entry(label).or_default().push(i);
    }
    classes
}

/// Splits `0..len` into `parts` contiguous ranges whose lengths differ by at most one;
/// the first `len % parts` ranges get the extra element. `parts` must be non-zero.
pub(crate) fn even_bounds(len: usize, parts: usize) -> impl Iterator<Item = (usize, usize)> {
    let base = len / parts;
    let extra = len % parts;
    (0..parts).map(move |p| {
        let start = p * base + p.min(extra);
        let end = start + base + usize::from(p < extra);
        (start, end)
    })
}

/// Sorts every client's list ascending.
pub(crate) fn sort_all(mut parts: Vec<Vec<usize>>) -> Vec<Vec<usize>> {
    for part in &mut parts {
        part.sort_unstable();
    }
    parts
}

//! IID partitioning.

use rand::seq::SliceRandom;

use super::{PartitionError, Result, even_bounds, rng, sort_all};

/// Shuffles `0..num_samples` with `seed` and deals it into `num_clients` parts whose sizes
/// differ by at most one (the first `num_samples % num_clients` clients get the extra
/// sample). Each client's list is sorted ascending.
///
/// # Errors
/// [`PartitionError::ZeroClients`], [`PartitionError::EmptyInput`] when `num_samples == 0`,
/// and [`PartitionError::TooManyClients`] when `num_clients > num_samples`.
pub fn iid(num_samples: usize, num_clients: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if num_clients == 0 {
        return Err(PartitionError::ZeroClients);
    }
    if num_samples == 0 {
        return Err(PartitionError::EmptyInput {
            argument: "num_samples",
        });
    }
    if num_clients > num_samples {
        return Err(PartitionError::TooManyClients {
            num_clients,
            num_samples,
        });
    }
    let mut order: Vec<usize> = (0..num_samples).collect();
    order.shuffle(&mut rng(seed));
    let parts = even_bounds(num_samples, num_clients)
        .map(|(start, end)| order[start..end].to_vec())
        .collect();
    Ok(sort_all(parts))
}

//! Seeded train/test split of one client's indices.

use rand::seq::SliceRandom;

use super::{PartitionError, Result, rng};

/// Splits `indices` (typically one client's partition) into `(train, test)`.
///
/// The test set receives `round(test_fraction · n)` items, clamped to `1..=n-1` when
/// `n ≥ 2` so that both sides are non-empty; a single index always goes to train. The
/// items are chosen by a seeded shuffle of `indices`; both returned lists are sorted
/// ascending. Duplicated input indices are kept as given.
///
/// # Errors
/// [`PartitionError::EmptyInput`] when `indices` is empty and
/// [`PartitionError::InvalidFraction`] when `test_fraction` is not in the open interval
/// `(0, 1)`.
pub fn train_test_split(
    indices: &[usize],
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(PartitionError::InvalidFraction {
            fraction: test_fraction,
        });
    }
    if indices.is_empty() {
        return Err(PartitionError::EmptyInput {
            argument: "indices",
        });
    }
    let n = indices.len();
    let num_test = if n < 2 {
        0
    } else {
        // `test_fraction ∈ (0, 1)`, so the rounded product lies in `0..=n`.
        ((test_fraction * n as f64).round() as usize).clamp(1, n - 1)
    };
    let mut shuffled = indices.to_vec();
    shuffled.shuffle(&mut rng(seed));
    let mut train = shuffled.split_off(num_test);
    let mut test = shuffled;
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

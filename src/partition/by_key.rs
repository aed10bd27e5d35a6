//! Natural partitioning by a per-sample key.

use std::collections::BTreeMap;

use super::{PartitionError, Result};

/// Natural (non-random) partition: one client per distinct key value, e.g. the source
/// dataset of each RLAIF-V sample, or a writer / device id.
///
/// Returns `(keys, parts)` where `keys` holds the distinct keys in ascending order and
/// `parts[c]` the ascending indices of the samples whose key equals `keys[c]`.
///
/// # Errors
/// [`PartitionError::EmptyInput`] when `keys` is empty.
pub fn by_key<K: Ord + Clone>(keys: &[K]) -> Result<(Vec<K>, Vec<Vec<usize>>)> {
    if keys.is_empty() {
        return Err(PartitionError::EmptyInput { argument: "keys" });
    }
    let mut groups: BTreeMap<&K, Vec<usize>> = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        groups.entry(key).or_default().push(i);
    }
    Ok(groups.into_iter().map(|(k, v)| (k.clone(), v)).unzip())
}

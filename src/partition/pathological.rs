//! k-classes-per-client partitioning.

use rand::seq::SliceRandom;

use super::{PartitionError, Result, even_bounds, indices_by_class, rng, sort_all};

/// Pathological non-IID partition: every client receives exactly `classes_per_client`
/// distinct labels.
///
/// The distinct labels (ascending) are permuted with `seed`; slot `s` of the sequence of
/// `num_clients * classes_per_client` slots holds class `perm[s mod C]` (round-robin over
/// the permutation, `C` distinct classes), and client `c` takes slots
/// `c·k .. (c+1)·k`. Consecutive slots of a cyclic sequence are distinct because `k ≤ C`,
/// and each class is held by `⌊N·k/C⌋` or `⌈N·k/C⌉` clients. Each class's indices are then
/// shuffled and dealt into near-equal contiguous chunks (sizes differ by at most one) among
/// its holders, in client order. Each client's list is sorted ascending.
///
/// # Errors
/// [`PartitionError::ZeroClients`], [`PartitionError::ZeroClassesPerClient`],
/// [`PartitionError::EmptyInput`], [`PartitionError::TooManyClassesPerClient`] (`k > C`),
/// [`PartitionError::ClassesNotCovered`] (`N·k < C`, some class would be dropped) and
/// [`PartitionError::ClassTooSmall`] when a class has fewer samples than holders.
pub fn pathological(
    labels: &[usize],
    num_clients: usize,
    classes_per_client: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if num_clients == 0 {
        return Err(PartitionError::ZeroClients);
    }
    if classes_per_client == 0 {
        return Err(PartitionError::ZeroClassesPerClient);
    }
    if labels.is_empty() {
        return Err(PartitionError::EmptyInput { argument: "labels" });
    }
    let classes: Vec<(usize, Vec<usize>)> = indices_by_class(labels).into_iter().collect();
    let num_classes = classes.len();
    if classes_per_client > num_classes {
        return Err(PartitionError::TooManyClassesPerClient {
            classes_per_client,
            num_classes,
        });
    }
    if num_clients.saturating_mul(classes_per_client) < num_classes {
        return Err(PartitionError::ClassesNotCovered {
            num_clients,
            classes_per_client,
            num_classes,
        });
    }

    let mut rng = rng(seed);
    let mut perm: Vec<usize> = (0..num_classes).collect();
    perm.shuffle(&mut rng);

    // holders[class position] = clients holding it, ascending.
    let mut holders: Vec<Vec<usize>> = vec![Vec::new(); num_classes];
    for slot in 0..num_clients * classes_per_client {
        holders[perm[slot % num_classes]].push(slot / classes_per_client);
    }

    let mut parts: Vec<Vec<usize>> = vec![Vec::new(); num_clients];
    for ((class, indices), owners) in classes.into_iter().zip(&holders) {
        if indices.len() < owners.len() {
            return Err(PartitionError::ClassTooSmall {
                class,
                count: indices.len(),
                holders: owners.len(),
            });
        }
        let mut indices = indices;
        indices.shuffle(&mut rng);
        for (&client, (start, end)) in owners.iter().zip(even_bounds(indices.len(), owners.len())) {
            parts[client].extend_from_slice(&indices[start..end]);
        }
    }
    Ok(sort_all(parts))
}

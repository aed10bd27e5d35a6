//! Sort-and-shard ("pathological non-IID") partitioning (McMahan et al. 2017).

use rand::seq::SliceRandom;

use super::{PartitionError, Result, rng, sort_all};

/// The label-shard partition of McMahan et al. 2017, *Communication-Efficient Learning of
/// Deep Networks from Decentralized Data* (`FedAvg`), §3.
///
/// The sample indices are stably sorted by label, cut into `num_shards` contiguous shards of
/// `labels.len() / num_shards` samples, the shard ids are shuffled with `seed`, and client
/// `c` receives shards `c * shards_per_client .. (c + 1) * shards_per_client` of that
/// shuffled order. There are `num_clients = num_shards / shards_per_client` clients, each
/// of exactly `shards_per_client * labels.len() / num_shards` samples, sorted ascending.
///
/// With CIFAR-10 (50 000 labels, 5 000 per class), 80 shards and 2 shards per client give
/// 40 clients of 1 250 samples; every shard (625 samples) holds a single label, so every
/// client holds at most two labels.
///
/// # Errors
/// [`PartitionError::ZeroShards`], [`PartitionError::ZeroShardsPerClient`],
/// [`PartitionError::EmptyInput`], [`PartitionError::TooManyShards`],
/// [`PartitionError::SamplesNotDivisibleByShards`] and
/// [`PartitionError::ShardsNotDivisibleByClients`].
pub fn label_shards(
    labels: &[usize],
    num_shards: usize,
    shards_per_client: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>> {
    if num_shards == 0 {
        return Err(PartitionError::ZeroShards);
    }
    if shards_per_client == 0 {
        return Err(PartitionError::ZeroShardsPerClient);
    }
    let num_samples = labels.len();
    if num_samples == 0 {
        return Err(PartitionError::EmptyInput { argument: "labels" });
    }
    if num_shards > num_samples {
        return Err(PartitionError::TooManyShards {
            num_shards,
            num_samples,
        });
    }
    if !num_samples.is_multiple_of(num_shards) {
        return Err(PartitionError::SamplesNotDivisibleByShards {
            num_samples,
            num_shards,
        });
    }
    if !num_shards.is_multiple_of(shards_per_client) {
        return Err(PartitionError::ShardsNotDivisibleByClients {
            num_shards,
            shards_per_client,
        });
    }
    let shard_size = num_samples / num_shards;

    let mut sorted: Vec<usize> = (0..num_samples).collect();
    sorted.sort_by_key(|&i| labels[i]); // stable: ties keep ascending index order

    let mut shard_ids: Vec<usize> = (0..num_shards).collect();
    shard_ids.shuffle(&mut rng(seed));

    let parts = shard_ids
        .chunks(shards_per_client)
        .map(|shards| {
            shards
                .iter()
                .flat_map(|&s| sorted[s * shard_size..(s + 1) * shard_size].iter().copied())
                .collect()
        })
        .collect();
    Ok(sort_all(parts))
}

//! Federated partitions of RLAIF-V: by source dataset (natural non-IID) or IID, with a
//! seeded per-client train/test split. Built on [`crate::partition`].

use rand::seq::SliceRandom;

use super::reader::RlaifV;
use crate::data::DataError;
use crate::partition::{by_key, iid, train_test_split};
use crate::{FedError, Result};

/// How samples are dealt to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlaifVScheme {
    /// One client per source dataset (`origin_dataset`), clients in source-name order.
    BySource,
    /// Source datasets grouped into `num_clients` clients: sources sorted by size (largest
    /// first, ties by name) are dealt one by one to the client holding the fewest samples so
    /// far (ties to the lowest client id), which balances the clients' sizes.
    GroupedBySource {
        /// Number of clients; at most the number of sources.
        num_clients: usize,
    },
    /// A seeded uniform shuffle dealt into `num_clients` near-equal parts
    /// ([`crate::partition::iid`]).
    Iid {
        /// Number of clients.
        num_clients: usize,
        /// The shuffle's seed.
        seed: u64,
    },
}

/// Options of [`partition_rlaif_v`].
#[derive(Debug, Clone, PartialEq)]
pub struct RlaifVPartitionOptions {
    /// How samples are dealt to clients.
    pub scheme: RlaifVScheme,
    /// Fraction of each client's samples held out for testing, in `(0, 1)`.
    pub test_fraction: f64,
    /// Seed of the train/test split and of the `max_samples_per_client` subsample; client `c`
    /// uses `seed + c`.
    pub seed: u64,
    /// Keep a seeded random subset of at most this many samples per client (before the
    /// split), for quick runs.
    pub max_samples_per_client: Option<usize>,
}

impl RlaifVPartitionOptions {
    /// `scheme` with a 20 % test split, seed 0 and no per-client cap.
    pub fn new(scheme: RlaifVScheme) -> Self {
        Self {
            scheme,
            test_fraction: 0.2,
            seed: 0,
            max_samples_per_client: None,
        }
    }

    /// Sets [`Self::test_fraction`].
    pub fn test_fraction(mut self, fraction: f64) -> Self {
        self.test_fraction = fraction;
        self
    }

    /// Sets [`Self::seed`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets [`Self::max_samples_per_client`].
    pub fn max_samples_per_client(mut self, max: usize) -> Self {
        self.max_samples_per_client = Some(max);
        self
    }
}

/// One client's share: indices into the dataset's samples, each list ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlaifVClient {
    /// The client id (position in the returned list).
    pub client: usize,
    /// The source datasets the client's samples come from, sorted.
    pub sources: Vec<String>,
    /// Training samples.
    pub train: Vec<usize>,
    /// Test samples.
    pub test: Vec<usize>,
}

impl RlaifVClient {
    /// Training plus test samples.
    pub fn len(&self) -> usize {
        self.train.len() + self.test.len()
    }

    /// Whether the client holds no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Partitions `data` into clients and splits each into train and test.
///
/// # Errors
/// [`FedError::Partition`] for the partitioners' argument errors (no samples, more IID
/// clients than samples, a test fraction outside `(0, 1)`), [`FedError::Data`] with
/// [`DataError::InvalidArgument`] when `GroupedBySource` asks for zero clients or more clients
/// than sources, or `max_samples_per_client` is zero.
pub fn partition_rlaif_v(
    data: &RlaifV,
    options: &RlaifVPartitionOptions,
) -> Result<Vec<RlaifVClient>> {
    partition_by_source_keys(&data.source_keys(), options)
}

/// [`partition_rlaif_v`] on the per-sample source keys alone (`keys[i]` is sample `i`'s
/// `origin_dataset`).
///
/// # Errors
/// As [`partition_rlaif_v`].
pub fn partition_by_source_keys(
    keys: &[&str],
    options: &RlaifVPartitionOptions,
) -> Result<Vec<RlaifVClient>> {
    if options.max_samples_per_client == Some(0) {
        return Err(invalid(
            "max_samples_per_client",
            "must be at least 1".into(),
        ));
    }
    let parts: Vec<Vec<usize>> = match options.scheme {
        RlaifVScheme::BySource => by_key(keys)?.1,
        RlaifVScheme::GroupedBySource { num_clients } => group_sources(keys, num_clients)?,
        RlaifVScheme::Iid { num_clients, seed } => iid(keys.len(), num_clients, seed)?,
    };
    parts
        .into_iter()
        .enumerate()
        .map(|(client, mut indices)| {
            let seed = options.seed.wrapping_add(client as u64);
            if let Some(max) = options.max_samples_per_client
                && indices.len() > max
            {
                indices.shuffle(&mut crate::partition::rng(seed));
                indices.truncate(max);
                indices.sort_unstable();
            }
            let (train, test) = train_test_split(&indices, options.test_fraction, seed)?;
            let mut sources: Vec<String> = indices.iter().map(|&i| keys[i].to_string()).collect();
            sources.sort_unstable();
            sources.dedup();
            Ok(RlaifVClient {
                client,
                sources,
                train,
                test,
            })
        })
        .collect()
}

fn invalid(field: &'static str, reason: String) -> FedError {
    FedError::Data(DataError::InvalidArgument { field, reason })
}

/// Greedy size-balanced grouping of the sources into `num_clients` clients.
fn group_sources(keys: &[&str], num_clients: usize) -> Result<Vec<Vec<usize>>> {
    let (sources, groups) = by_key(keys)?;
    if num_clients == 0 || num_clients > sources.len() {
        return Err(invalid(
            "num_clients",
            format!(
                "must be in 1..={} (the number of source datasets), got {num_clients}",
                sources.len()
            ),
        ));
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    // `by_key` returns sources in name order, so a stable sort keeps ties by name.
    order.sort_by_key(|&g| std::cmp::Reverse(groups[g].len()));
    let mut clients: Vec<Vec<usize>> = vec![Vec::new(); num_clients];
    for g in order {
        let smallest = (0..num_clients)
            .min_by_key(|&c| (clients[c].len(), c))
            .unwrap_or(0);
        clients[smallest].extend_from_slice(&groups[g]);
    }
    for client in &mut clients {
        client.sort_unstable();
    }
    Ok(clients)
}

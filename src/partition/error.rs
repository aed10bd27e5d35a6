//! Errors returned by the partitioners.

use thiserror::Error;

/// Result alias for the partitioners.
pub type Result<T> = std::result::Result<T, PartitionError>;

/// Invalid partitioner arguments, or a random draw that could not satisfy a constraint.
///
/// Every message names the offending argument and its value.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PartitionError {
    /// `num_clients` was zero.
    #[error("num_clients must be at least 1, got 0")]
    ZeroClients,
    /// `num_shards` was zero.
    #[error("num_shards must be at least 1, got 0")]
    ZeroShards,
    /// `shards_per_client` was zero.
    #[error("shards_per_client must be at least 1, got 0")]
    ZeroShardsPerClient,
    /// `classes_per_client` was zero.
    #[error("classes_per_client must be at least 1, got 0")]
    ZeroClassesPerClient,
    /// The input named by `argument` has no elements.
    #[error("{argument} must not be empty, got 0 elements")]
    EmptyInput {
        /// Name of the empty argument.
        argument: &'static str,
    },
    /// The Dirichlet concentration is not a finite positive number.
    #[error("alpha must be finite and > 0, got {alpha}")]
    InvalidAlpha {
        /// The rejected concentration.
        alpha: f64,
    },
    /// A partitioner that gives every client at least one sample got more clients than samples.
    #[error(
        "num_clients = {num_clients} exceeds the number of samples ({num_samples}); \
         every client must receive at least one sample"
    )]
    TooManyClients {
        /// Requested number of clients.
        num_clients: usize,
        /// Number of available samples.
        num_samples: usize,
    },
    /// More shards than samples were requested.
    #[error("num_shards = {num_shards} exceeds the number of samples ({num_samples})")]
    TooManyShards {
        /// Requested number of shards.
        num_shards: usize,
        /// Number of available samples.
        num_samples: usize,
    },
    /// The samples cannot be cut into equal shards.
    #[error("number of samples ({num_samples}) is not divisible by num_shards = {num_shards}")]
    SamplesNotDivisibleByShards {
        /// Number of available samples.
        num_samples: usize,
        /// Requested number of shards.
        num_shards: usize,
    },
    /// The shards cannot be dealt out equally.
    #[error(
        "num_shards = {num_shards} is not divisible by shards_per_client = {shards_per_client}"
    )]
    ShardsNotDivisibleByClients {
        /// Requested number of shards.
        num_shards: usize,
        /// Requested shards per client.
        shards_per_client: usize,
    },
    /// `classes_per_client` exceeds the number of distinct labels.
    #[error(
        "classes_per_client = {classes_per_client} exceeds the number of distinct classes \
         ({num_classes})"
    )]
    TooManyClassesPerClient {
        /// Requested classes per client.
        classes_per_client: usize,
        /// Number of distinct labels in the input.
        num_classes: usize,
    },
    /// `num_clients * classes_per_client` slots cannot hold every class at least once.
    #[error(
        "num_clients * classes_per_client = {num_clients} * {classes_per_client} is smaller than \
         the number of distinct classes ({num_classes}); some classes would be dropped"
    )]
    ClassesNotCovered {
        /// Requested number of clients.
        num_clients: usize,
        /// Requested classes per client.
        classes_per_client: usize,
        /// Number of distinct labels in the input.
        num_classes: usize,
    },
    /// A class has fewer samples than clients that must each receive some of it.
    #[error(
        "class {class} has {count} samples but is assigned to {holders} clients; \
         each holder needs at least one (lower num_clients or classes_per_client)"
    )]
    ClassTooSmall {
        /// The label value.
        class: usize,
        /// Samples carrying that label.
        count: usize,
        /// Clients the label was assigned to.
        holders: usize,
    },
    /// The test fraction is outside the open interval (0, 1).
    #[error("test_fraction must be in the open interval (0, 1), got {fraction}")]
    InvalidFraction {
        /// The rejected fraction.
        fraction: f64,
    },
    /// `min_partition_size * num_clients` exceeds the number of samples.
    #[error(
        "min_partition_size = {min_partition_size} cannot be met by num_clients = {num_clients} \
         with only {num_samples} samples"
    )]
    MinSizeInfeasible {
        /// Requested minimum client size.
        min_partition_size: usize,
        /// Requested number of clients.
        num_clients: usize,
        /// Number of available samples.
        num_samples: usize,
    },
    /// No Dirichlet draw within the try budget gave every client `min_partition_size` samples.
    #[error(
        "min_partition_size = {min_partition_size} not reached after {tries} Dirichlet draws \
         (smallest client in the last draw had {smallest} samples); raise alpha or lower \
         min_partition_size"
    )]
    MinSizeNotReached {
        /// Requested minimum client size.
        min_partition_size: usize,
        /// Draws attempted.
        tries: usize,
        /// Size of the smallest client in the last draw.
        smallest: usize,
    },
}

//! Visual question answering with Florence-2: the paper's main experiment (RLAIF-V), as
//! library code independent of the dataset reader.
//!
//! * [`sample`]: one example (preprocessed image, `<s> question </s>` prompt ids,
//!   `<s> answer </s>` labels) and padded batches, with transformers' `shift_tokens_right`.
//! * [`loss`]: teacher-forced cross-entropy over answer tokens (the paper's equation 1) and the
//!   token-level scores.
//! * [`ids`]: where a sample's token ids live (in memory, or in the image's file) until a
//!   batch reads them.
//! * [`image`]: where a sample's image lives (encoded, in memory or in a file) until a batch
//!   decodes and preprocesses it.
//! * [`cache`]: the frozen-prefix cache (the last decoder layer's inputs, computed once; in
//!   memory or in shards on disk).
//! * [`task`]: the [`crate::FederatedTask`] the simulation runs.
//! * [`cohort`]: cohort-batched training of the clients of a round from the cache.

pub mod cache;
pub mod cohort;
pub mod ids;
pub mod image;
pub mod loss;
pub mod sample;
pub mod task;

pub use cache::{
    BuildStats, CacheConfig, CacheDtype, CacheKey, DiskCacheOptions, FrozenPrefixCache,
    PrefixBatch, PrefixEntry, check_cacheable, prefix_forward_passes,
};
pub use cohort::{VQA_COHORT_MEMORY_BUDGET, VQA_CPU_COHORT_SIZE};
pub use ids::{SampleIds, TokenIds};
pub use image::{EncodedBytes, ImagePreprocessor, ImageStore, SampleImage};
pub use loss::{masked_cross_entropy, score_tokens, token_nll};
pub use sample::{BOS_ID, IGNORE_INDEX, VqaBatch, VqaSample, shift_tokens_right, truncate_ids};
pub use task::{VqaSplit, VqaTask};

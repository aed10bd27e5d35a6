//! The frozen-prefix cache.
//!
//! With adapters only in the last decoder layer, the vision tower, the projector, the encoder
//! and every earlier decoder layer are frozen, and teacher forcing fixes the decoder's inputs:
//! the last layer's inputs (the encoder output, its mask, and the hidden states after the
//! earlier decoder layers) never change during training. The cache computes them once per
//! sample and training runs only [`crate::models::florence2::BartModel::decode_last_layer`]
//! (adapter dropout and the last layer's own dropouts still apply; only frozen parts are
//! cached).
//!
//! * Storage: per sample, the unpadded encoder output `[S_i, d]` and prefix output `[T_i, d]`,
//!   in f16 ([`CacheDtype::F16`], the default, half the memory; rounding moves the loss by
//!   about 1e-3 relative) or f32 ([`CacheDtype::F32`], exact).
//! * In memory ([`FrozenPrefixCache::build`]): samples are cached in the order given until
//!   [`CacheConfig::budget_bytes`] is reached; the rest are **recomputed** on every use.
//! * On disk ([`FrozenPrefixCache::build_on_disk`]): every sample, in safetensors shards
//!   (`entry`, `shard`) under a folder with a manifest keyed by everything the values depend
//!   on ([`CacheKey`]: weights hash, precision, dtype, image processing, samples). A later run
//!   with the same key computes nothing; a build killed midway continues from its last
//!   written shard; another key rebuilds the cache and says why. Entries are read back one sample at a
//!   time (no read amplification); the budget bounds those held in memory (least recently
//!   used dropped first).
//! * The frozen prefix runs without dropout and without the vision tower's drop-path (as at
//!   evaluation): with a checkpoint whose `dropout` or `drop_path_rate` is non-zero (Microsoft's
//!   base: 0.1 and 0.1), cached training differs from uncached training by exactly the noise
//!   the frozen layers would have added (transformers adds it, frozen or not; so does this
//!   crate without the cache). The tiny test model uses 0.
//! * Precision of the computation ([`CacheConfig::precision`]): the frozen prefix can run in
//!   f16 or bf16 ([`crate::models::cast_floats`], once per build), while the last layer and
//!   its adapters train in f32. On a GPU this halves the prefix's memory traffic and uses its
//!   half precision units; on the CPU it is slower than f32 (burn's CPU kernels convert).
//! * Building: on a CPU backend several batches run at once on rayon's threads; on others one
//!   batch is in flight ([`CacheConfig::for_backend`]). Without a batch size from the user, it is
//!   derived from free memory ([`CacheConfig::with_memory_batch`]). [`prefix_forward_passes`] counts the
//!   forward passes.
//! * Every client shares the frozen weights, so one cache (built from any client's model)
//!   serves them all.

mod build;
mod entry;
mod key;
mod memory;
mod shard;
mod store;

pub use build::{BuildStats, DiskCacheOptions};
pub use entry::{
    CacheConfig, CacheDtype, PrefixBatch, PrefixEntry, check_cacheable, compute_entries,
    is_cpu_backend, prefix_forward_passes, stack_entries,
};
pub use key::{CacheKey, MANIFEST_FILE, weights_hash};
pub use memory::{
    BatchChoice, CPU_MAX_BATCH, MAX_BATCH, SAFETY_FACTOR, SampleShape, USABLE_PERCENT,
    choose_batch, free_memory, parse_mem_available, sample_peak_bytes,
};
pub use store::FrozenPrefixCache;

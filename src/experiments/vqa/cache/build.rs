//! Building the cache: in memory up to a budget ([`FrozenPrefixCache::build`]), or on disk in
//! shards that a later run, or a killed build's next attempt, reuses
//! ([`FrozenPrefixCache::build_on_disk`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::module::AutodiffModule;
use burn::prelude::*;
use rayon::prelude::*;

use super::entry::{CacheConfig, PrefixEntry, check_cacheable, compute_entries};
use super::key::{CacheKey, MANIFEST_FILE, Manifest};
use super::shard::{shard_path, write_shard};
use super::store::{DiskShards, FrozenPrefixCache, Hot, Storage};
use crate::error::{FedError, Result};
use crate::experiments::vqa::sample::VqaSample;
use crate::models::cast_floats;
use crate::models::florence2::Florence2;

/// Where an on-disk cache lives and how it is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCacheOptions {
    /// The cache folder (`manifest.json` and `shard-NNNNNN.safetensors`).
    pub dir: PathBuf,
    /// Samples per shard (the unit written at once; samples are read back one by one).
    pub shard_samples: usize,
    /// Stop with an error after writing this many shards in this call (to test resuming a
    /// killed build); `None` builds everything.
    pub stop_after_shards: Option<usize>,
}

impl DiskCacheOptions {
    /// Shards of 32 samples in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            shard_samples: 32,
            stop_after_shards: None,
        }
    }
}

/// What [`FrozenPrefixCache::build_on_disk`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Shards found complete on disk and reused.
    pub shards_reused: usize,
    /// Shards computed and written.
    pub shards_built: usize,
    /// Frozen-prefix forward passes run (0 when everything was reused).
    pub forward_passes: u64,
    /// Why a cache found in the folder was discarded (its key did not match), if one was.
    pub rebuilt: Option<String>,
}

/// Computes the entries of `todo` (indices into `samples`) in batches, several at once on
/// rayon's threads when `config.parallel`; results in the order of `todo`.
fn compute_all<B: Backend>(
    prefix: &Florence2<B>,
    samples: &[VqaSample],
    todo: &[usize],
    config: &CacheConfig,
    device: &B::Device,
) -> Result<Vec<PrefixEntry>> {
    let run = |chunk: &[usize]| {
        let batch: Vec<&VqaSample> = chunk.iter().map(|&i| &samples[i]).collect();
        compute_entries(prefix, &batch, config.dtype, device)
    };
    let chunks: Vec<&[usize]> = todo.chunks(config.batch_size).collect();
    let computed: Vec<Result<Vec<PrefixEntry>>> = if config.parallel {
        chunks.par_iter().map(|c| run(c)).collect()
    } else {
        chunks.iter().map(|c| run(c)).collect()
    };
    let mut out = Vec::with_capacity(todo.len());
    for entries in computed {
        out.extend(entries?);
    }
    Ok(out)
}

impl FrozenPrefixCache {
    /// Runs the frozen prefix of `model` over `samples[i]` for every `i` in `indices` (in
    /// that order, until [`CacheConfig::budget_bytes`] is full) and keeps the entries in
    /// memory. `model` may be any client's model (on any backend: pass the inner module of an
    /// autodiff model to avoid recording a graph).
    ///
    /// # Errors
    /// As [`check_cacheable`], [`FedError::InvalidConfig`] for an index out of range or a
    /// batch size of 0, and the model's errors.
    pub fn build<B: Backend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        indices: &[usize],
        config: &CacheConfig,
        device: &B::Device,
    ) -> Result<Self> {
        check_cacheable(model)?;
        if config.batch_size == 0 {
            return Err(FedError::config("batch_size", "must be at least 1"));
        }
        let mut entries: Vec<Option<Arc<PrefixEntry>>> = vec![None; samples.len()];
        let mut bytes = 0;
        let mut seen = HashSet::with_capacity(indices.len());
        let mut todo: Vec<usize> = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= samples.len() {
                return Err(FedError::config(
                    "indices",
                    format!("sample {i} of {}", samples.len()),
                ));
            }
            if seen.insert(i) {
                todo.push(i);
            }
        }
        // Cast once for the whole build.
        let prefix = cast_floats(model.clone(), config.precision);
        // Groups of batches run at once; entries are kept in order until the budget is full,
        // so the result does not depend on the thread count.
        let group = config.batch_size
            * if config.parallel {
                rayon::current_num_threads().max(1)
            } else {
                1
            };
        'outer: for part in todo.chunks(group) {
            for (&i, entry) in part
                .iter()
                .zip(compute_all(&prefix, samples, part, config, device)?)
            {
                if bytes + entry.bytes() > config.budget_bytes {
                    break 'outer;
                }
                bytes += entry.bytes();
                entries[i] = Some(Arc::new(entry));
            }
        }
        Ok(Self {
            dtype: config.dtype,
            precision: config.precision,
            d_model: model.language_model.d_model(),
            num_samples: samples.len(),
            storage: Storage::Memory { entries, bytes },
        })
    }

    /// [`FrozenPrefixCache::build`] from an autodiff model's inner module.
    ///
    /// # Errors
    /// As [`FrozenPrefixCache::build`].
    pub fn build_from<B: burn::tensor::backend::AutodiffBackend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        indices: &[usize],
        config: &CacheConfig,
        device: &B::Device,
    ) -> Result<Self> {
        Self::build(&model.valid(), samples, indices, config, device)
    }

    /// The frozen prefix of every sample, in shards under `options.dir`: a cache already
    /// there with the same [`CacheKey`] is reused (its completed shards; a build killed
    /// midway continues where it stopped), one with another key is deleted and rebuilt
    /// ([`BuildStats::rebuilt`] says why). Shards are written atomically and recorded in the
    /// manifest once written. [`CacheConfig::budget_bytes`] is the memory held by entries
    /// read back for use (least recently used dropped first), not a limit on what is cached.
    ///
    /// # Errors
    /// As [`FrozenPrefixCache::build`], [`FedError::InvalidConfig`] for 0 samples per shard,
    /// I/O errors, and [`FedError::Task`] when
    /// [`DiskCacheOptions::stop_after_shards`] stopped the build.
    pub fn build_on_disk<B: Backend>(
        model: &Florence2<B>,
        samples: &[VqaSample],
        config: &CacheConfig,
        options: &DiskCacheOptions,
        device: &B::Device,
    ) -> Result<(Self, BuildStats)> {
        check_cacheable(model)?;
        if config.batch_size == 0 {
            return Err(FedError::config("batch_size", "must be at least 1"));
        }
        if options.shard_samples == 0 {
            return Err(FedError::config("shard_samples", "must be at least 1"));
        }
        let dir = options.dir.as_path();
        std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
        let key = CacheKey::new(model, samples, config, options.shard_samples)?;
        let mut stats = BuildStats::default();
        let mut manifest = match Manifest::read(dir) {
            Some(found) => match key.mismatch(&found.key) {
                None => found,
                Some(reason) => {
                    stats.rebuilt = Some(reason);
                    clear(dir)?;
                    Manifest {
                        key: key.clone(),
                        completed: BTreeMap::new(),
                    }
                }
            },
            None => {
                if dir.join(MANIFEST_FILE).exists() {
                    stats.rebuilt = Some("the manifest does not parse".into());
                }
                clear(dir)?;
                Manifest {
                    key: key.clone(),
                    completed: BTreeMap::new(),
                }
            }
        };
        // A shard recorded but gone is computed again.
        manifest
            .completed
            .retain(|&index, _| shard_path(dir, index).is_file());
        manifest.write(dir)?;

        let shards = samples.len().div_ceil(options.shard_samples);
        stats.shards_reused = manifest.completed.len();
        let before = super::prefix_forward_passes();
        let mut prefix = None;
        for index in 0..shards {
            if manifest.completed.contains_key(&index) {
                continue;
            }
            if options.stop_after_shards == Some(stats.shards_built) {
                return Err(FedError::Task(format!(
                    "cache build stopped after {} shards, as asked",
                    stats.shards_built
                )));
            }
            // Cast once, and only when something is computed.
            let prefix = prefix.get_or_insert_with(|| cast_floats(model.clone(), config.precision));
            let start = index * options.shard_samples;
            let end = (start + options.shard_samples).min(samples.len());
            let todo: Vec<usize> = (start..end).collect();
            let entries = compute_all(prefix, samples, &todo, config, device)?;
            write_shard(&shard_path(dir, index), &entries, config.dtype, key.d_model)?;
            let bytes: usize = entries.iter().map(PrefixEntry::bytes).sum();
            manifest.completed.insert(index, bytes as u64);
            manifest.write(dir)?;
            stats.shards_built += 1;
        }
        stats.forward_passes = super::prefix_forward_passes() - before;
        let cache = Self {
            dtype: config.dtype,
            precision: config.precision,
            d_model: key.d_model,
            num_samples: samples.len(),
            storage: Storage::Disk(DiskShards {
                dir: dir.to_path_buf(),
                shard_samples: options.shard_samples,
                shard_bytes: manifest.completed,
                budget_bytes: config.budget_bytes,
                indexes: Mutex::new(HashMap::new()),
                hot: Mutex::new(Hot::default()),
            }),
        };
        Ok((cache, stats))
    }
}

/// Removes the manifest and every shard file of `dir`.
fn clear(dir: &Path) -> Result<()> {
    let listing = std::fs::read_dir(dir).map_err(|e| FedError::io(dir, e))?;
    for entry in listing {
        let path = entry.map_err(|e| FedError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours =
            name == MANIFEST_FILE || (name.starts_with("shard-") && name.ends_with(".safetensors"));
        if ours {
            std::fs::remove_file(&path).map_err(|e| FedError::io(&path, e))?;
        }
    }
    Ok(())
}

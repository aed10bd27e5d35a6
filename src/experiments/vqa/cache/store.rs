//! [`FrozenPrefixCache`]: the entries in memory, or shards on disk with a RAM budget of hot
//! shards (least recently used dropped first).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::prelude::*;

use super::entry::{CacheDtype, PrefixBatch, PrefixEntry, stack_entries};
use super::shard::{Shard, read_shard, shard_path};
use crate::error::{FedError, Result};
use crate::models::Precision;

/// The frozen prefix's outputs for the samples of a dataset (indexed like it): in memory (as
/// many as the budget holds, see [`FrozenPrefixCache::build`]) or on disk (every sample, see
/// [`FrozenPrefixCache::build_on_disk`]).
#[derive(Debug)]
pub struct FrozenPrefixCache {
    pub(super) dtype: CacheDtype,
    pub(super) precision: Precision,
    pub(super) d_model: usize,
    pub(super) num_samples: usize,
    pub(super) storage: Storage,
}

#[derive(Debug)]
pub(super) enum Storage {
    Memory {
        entries: Vec<Option<Arc<PrefixEntry>>>,
        bytes: usize,
    },
    Disk(DiskShards),
}

/// Shards in a folder, loaded on demand and kept within a byte budget.
#[derive(Debug)]
pub(super) struct DiskShards {
    pub dir: PathBuf,
    pub shard_samples: usize,
    /// Bytes of activations per shard (from the manifest).
    pub shard_bytes: BTreeMap<usize, u64>,
    pub budget_bytes: usize,
    pub hot: Mutex<Hot>,
}

/// The shards in memory, most recently used last.
#[derive(Debug, Default)]
pub(super) struct Hot {
    shards: HashMap<usize, Arc<Shard>>,
    order: VecDeque<usize>,
    bytes: usize,
    loads: u64,
}

impl DiskShards {
    fn shard(&self, index: usize, dtype: CacheDtype, d_model: usize) -> Result<Arc<Shard>> {
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(shard) = hot.shards.get(&index).cloned() {
            hot.order.retain(|&i| i != index);
            hot.order.push_back(index);
            return Ok(shard);
        }
        let shard = Arc::new(read_shard(&shard_path(&self.dir, index), dtype, d_model)?);
        let size: usize = shard.iter().map(|e| e.bytes()).sum();
        hot.loads += 1;
        while hot.bytes + size > self.budget_bytes {
            let Some(old) = hot.order.pop_front() else {
                break;
            };
            if let Some(dropped) = hot.shards.remove(&old) {
                hot.bytes -= dropped.iter().map(|e| e.bytes()).sum::<usize>();
            }
        }
        if size <= self.budget_bytes {
            hot.shards.insert(index, shard.clone());
            hot.order.push_back(index);
            hot.bytes += size;
        }
        Ok(shard)
    }
}

impl PartialEq for FrozenPrefixCache {
    /// Same settings and the same entry (or none) for every sample.
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype
            && self.precision == other.precision
            && self.d_model == other.d_model
            && self.num_samples == other.num_samples
            && (0..self.num_samples).all(|i| self.get(i) == other.get(i))
    }
}

impl FrozenPrefixCache {
    /// The stored precision.
    pub fn dtype(&self) -> CacheDtype {
        self.dtype
    }

    /// The precision the prefix was computed in (recompute missing samples in it too).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Width of the cached hidden states.
    pub fn d_model(&self) -> usize {
        self.d_model
    }

    /// The folder of an on-disk cache.
    pub fn dir(&self) -> Option<&Path> {
        match &self.storage {
            Storage::Memory { .. } => None,
            Storage::Disk(disk) => Some(&disk.dir),
        }
    }

    /// The entry of sample `i`, if cached (read from disk when needed).
    ///
    /// # Errors
    /// [`FedError::Io`] / [`FedError::Task`] when a shard cannot be read.
    pub fn entry(&self, i: usize) -> Result<Option<Arc<PrefixEntry>>> {
        match &self.storage {
            Storage::Memory { entries, .. } => Ok(entries.get(i).cloned().flatten()),
            Storage::Disk(disk) => {
                if i >= self.num_samples {
                    return Ok(None);
                }
                let index = i / disk.shard_samples;
                let shard = disk.shard(index, self.dtype, self.d_model)?;
                shard
                    .get(i % disk.shard_samples)
                    .cloned()
                    .map(Some)
                    .ok_or_else(|| FedError::Task(format!("cache shard {index} lacks sample {i}")))
            }
        }
    }

    /// The entry of sample `i`, if cached ([`FrozenPrefixCache::entry`], `None` on a read
    /// error).
    pub fn get(&self, i: usize) -> Option<Arc<PrefixEntry>> {
        self.entry(i).ok().flatten()
    }

    /// Length of the sample list the cache was built over (cached or not).
    pub fn num_samples(&self) -> usize {
        self.num_samples
    }

    /// Number of cached samples (every sample on disk).
    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::Memory { entries, .. } => entries.iter().filter(|e| e.is_some()).count(),
            Storage::Disk(_) => self.num_samples,
        }
    }

    /// Whether no sample is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of activations cached (in memory, or in the shards on disk).
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::Memory { bytes, .. } => *bytes,
            Storage::Disk(disk) => disk.shard_bytes.values().sum::<u64>() as usize,
        }
    }

    /// Bytes of activations held in memory now (on disk: the hot shards).
    pub fn resident_bytes(&self) -> usize {
        match &self.storage {
            Storage::Memory { bytes, .. } => *bytes,
            Storage::Disk(disk) => disk.hot.lock().map(|h| h.bytes).unwrap_or(0),
        }
    }

    /// Shards read from disk so far (0 in memory).
    pub fn shard_loads(&self) -> u64 {
        match &self.storage {
            Storage::Memory { .. } => 0,
            Storage::Disk(disk) => disk.hot.lock().map(|h| h.loads).unwrap_or(0),
        }
    }

    /// The rows of `rows` that are not cached (to compute with
    /// [`super::compute_entries`], on a model without autodiff cast to
    /// [`FrozenPrefixCache::precision`], before [`FrozenPrefixCache::stack`]); always empty
    /// on disk.
    pub fn missing(&self, rows: &[usize]) -> Vec<usize> {
        match &self.storage {
            Storage::Memory { entries, .. } => rows
                .iter()
                .copied()
                .filter(|&i| entries.get(i).is_none_or(Option::is_none))
                .collect(),
            Storage::Disk(_) => Vec::new(),
        }
    }

    /// The last layer's inputs for the samples `rows`: cached entries, and for the rows
    /// [`FrozenPrefixCache::missing`] returns, `fresh` in that order.
    ///
    /// # Errors
    /// [`FedError::Task`] when `fresh` does not cover the missing rows or a shard cannot be
    /// read, and [`FedError::InvalidConfig`] for an empty batch.
    pub fn stack<B: Backend>(
        &self,
        rows: &[usize],
        fresh: &[PrefixEntry],
        device: &B::Device,
    ) -> Result<PrefixBatch<B>> {
        let mut fresh = fresh.iter();
        let mut held = Vec::with_capacity(rows.len());
        for &i in rows {
            held.push(self.entry(i)?);
        }
        let entries = rows
            .iter()
            .zip(&held)
            .map(|(&i, e)| {
                e.as_deref().or_else(|| fresh.next()).ok_or_else(|| {
                    FedError::Task(format!("sample {i} is neither cached nor computed"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        stack_entries(&entries, self.d_model, device)
    }
}

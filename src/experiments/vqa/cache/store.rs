//! [`FrozenPrefixCache`]: the entries in memory, or shards on disk read sample by sample with a
//! RAM budget of hot entries (least recently used dropped first).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use burn::prelude::*;

use super::entry::{CacheDtype, PrefixBatch, PrefixEntry, stack_entries};
use super::shard::{ShardIndex, read_entry, read_index, shard_path};
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

/// Shards in a folder, read one sample at a time on demand, the most recently used samples
/// kept in memory within a byte budget.
#[derive(Debug)]
pub(super) struct DiskShards {
    pub dir: PathBuf,
    pub shard_samples: usize,
    /// Bytes of activations per shard (from the manifest).
    pub shard_bytes: BTreeMap<usize, u64>,
    pub budget_bytes: usize,
    /// Each shard's index, read when the shard is first used.
    pub indexes: Mutex<HashMap<usize, Arc<ShardIndex>>>,
    pub hot: Mutex<Hot>,
}

/// The entries held in memory, least recently used first (by use tick).
#[derive(Debug, Default)]
pub(super) struct Hot {
    entries: HashMap<usize, (Arc<PrefixEntry>, u64)>,
    order: BTreeMap<u64, usize>,
    tick: u64,
    bytes: usize,
    reads: u64,
}

impl Hot {
    fn touch(&mut self, i: usize) -> Option<Arc<PrefixEntry>> {
        let tick = self.tick + 1;
        let (entry, old) = self.entries.get_mut(&i)?;
        let entry = entry.clone();
        self.order.remove(old);
        *old = tick;
        self.order.insert(tick, i);
        self.tick = tick;
        Some(entry)
    }

    fn insert(&mut self, i: usize, entry: Arc<PrefixEntry>, budget: usize) {
        let size = entry.bytes();
        if size > budget {
            return;
        }
        while self.bytes + size > budget {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((dropped, _)) = self.entries.remove(&old) {
                self.bytes -= dropped.bytes();
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, i);
        self.entries.insert(i, (entry, self.tick));
        self.bytes += size;
    }
}

impl DiskShards {
    fn entry(&self, i: usize, dtype: CacheDtype, d_model: usize) -> Result<Arc<PrefixEntry>> {
        if let Some(entry) = self.hot.lock().unwrap_or_else(|p| p.into_inner()).touch(i) {
            return Ok(entry);
        }
        let shard = i / self.shard_samples;
        let index = {
            let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
            match indexes.get(&shard) {
                Some(index) => index.clone(),
                None => {
                    let index =
                        Arc::new(read_index(&shard_path(&self.dir, shard), dtype, d_model)?);
                    indexes.insert(shard, index.clone());
                    index
                }
            }
        };
        let k = i % self.shard_samples;
        if k >= index.len() {
            return Err(FedError::Task(format!(
                "cache shard {shard} lacks sample {i}"
            )));
        }
        let entry = Arc::new(read_entry(&index, k, dtype, d_model)?);
        let mut hot = self.hot.lock().unwrap_or_else(|p| p.into_inner());
        hot.reads += 1;
        hot.insert(i, entry.clone(), self.budget_bytes);
        Ok(entry)
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
                disk.entry(i, self.dtype, self.d_model).map(Some)
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

    /// Bytes of activations held in memory now (on disk: the recently used entries).
    pub fn resident_bytes(&self) -> usize {
        match &self.storage {
            Storage::Memory { bytes, .. } => *bytes,
            Storage::Disk(disk) => disk.hot.lock().map(|h| h.bytes).unwrap_or(0),
        }
    }

    /// Entries read from disk so far (0 in memory).
    pub fn disk_reads(&self) -> u64 {
        match &self.storage {
            Storage::Memory { .. } => 0,
            Storage::Disk(disk) => disk.hot.lock().map(|h| h.reads).unwrap_or(0),
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

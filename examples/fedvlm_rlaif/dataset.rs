//! `--dataset rlaif-v|okvqa`: finding and reading the rows of either dataset.

use std::sync::Arc;

use fedvlm::data::{
    OkVqa, OkVqaFiles, OkVqaOptions, OkVqaSample, RlaifV, RlaifVOptions, RlaifVSample,
    RlaifVShards, read_okvqa, read_rlaif_v,
};
use fedvlm::experiments::rlaif::{RlaifConfig, VqaDataset, VqaRows};
use fedvlm::experiments::vqa::{EncodedBytes, ImageStore};

use super::{AnyError, Args};

/// The files of `--data-dir`, or of the dataset's hub repository (downloaded when online).
pub enum DataFiles {
    /// RLAIF-V shards.
    RlaifV(RlaifVShards),
    /// OK-VQA parquet files.
    OkVqa(OkVqaFiles),
}

/// The rows read.
pub enum LoadedRows {
    /// RLAIF-V rows.
    RlaifV(RlaifV),
    /// OK-VQA rows.
    OkVqa(OkVqa),
}

impl LoadedRows {
    /// The rows, for `RlaifData::prepare` and the sweep.
    pub fn rows(&self) -> VqaRows<'_> {
        match self {
            Self::RlaifV(rows) => VqaRows::from(rows),
            Self::OkVqa(rows) => VqaRows::from(rows),
        }
    }

    /// What the read found, for the log.
    pub fn summary(&self) -> String {
        match self {
            Self::RlaifV(rows) => rows.summary().to_string(),
            Self::OkVqa(rows) => rows.summary().to_string(),
        }
    }
}

/// Finds the dataset's files (a folder with `--data-dir`, else the hub).
pub fn find_files(args: &Args) -> Result<DataFiles, AnyError> {
    let dataset = args.dataset;
    let repo = dataset.hub_repo();
    Ok(match (dataset, &args.data_dir) {
        (VqaDataset::RlaifV, _) => DataFiles::RlaifV(super::find_shards(args)?),
        (VqaDataset::OkVqa, Some(dir)) => {
            DataFiles::OkVqa(OkVqaFiles::from_dir(dir).map_err(|e| {
                format!(
                    "no OK-VQA files in --data-dir {}: {e} (expected val2014-*.parquet, \
                 directly or under data/)",
                    dir.display()
                )
            })?)
        }
        (VqaDataset::OkVqa, None) => DataFiles::OkVqa(OkVqaFiles::resolve(repo).map_err(|e| {
            format!(
                "cannot get {repo}: {e}\n(offline? download its data/val2014-*.parquet \
                 elsewhere and pass --data-dir FOLDER)"
            )
        })?),
    })
}

/// Reads the rows: with a per-client cap, only as many as `clients` clients can use
/// (RLAIF-V: a seeded sample per source; OK-VQA: the first rows). Every image moves into
/// `store` as it is read (what stays in memory is the rows' text); `images[r]` says where row
/// `r`'s went.
pub fn load_rows(
    args: &Args,
    files: &DataFiles,
    config: &RlaifConfig,
    clients: usize,
    store: &Arc<ImageStore>,
) -> Result<(LoadedRows, Vec<EncodedBytes>), AnyError> {
    let cap = config
        .max_samples_per_client
        .map(|c| c.saturating_mul(clients));
    let mut images = Vec::new();
    let mut failed = None;
    let mut spill = |bytes: &mut Vec<u8>| -> bool {
        if failed.is_some() {
            return false;
        }
        match store.append(bytes) {
            Ok(stored) => {
                *bytes = Vec::new();
                images.push(stored);
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    let rows = match files {
        DataFiles::RlaifV(shards) => {
            let mut options = RlaifVOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples_per_source(cap).sample_seed(config.seed);
            }
            let mut samples = Vec::new();
            let summary = read_rlaif_v(&shards.files, &options, |mut s: RlaifVSample| {
                if spill(&mut s.image_bytes) {
                    samples.push(s);
                }
            })?;
            LoadedRows::RlaifV(RlaifV::from_parts(samples, summary))
        }
        DataFiles::OkVqa(files) => {
            let mut options = OkVqaOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples(cap);
            }
            let mut samples = Vec::new();
            let summary = read_okvqa(&files.files, &options, |mut s: OkVqaSample| {
                if spill(&mut s.image_bytes) {
                    samples.push(s);
                }
            })?;
            LoadedRows::OkVqa(OkVqa::from_parts(samples, summary))
        }
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok((rows, images))
}

//! `--dataset rlaif-v|okvqa`: finding and reading the rows of either dataset.

use fedvlm::data::{OkVqa, OkVqaFiles, OkVqaOptions, RlaifV, RlaifVOptions, RlaifVShards};
use fedvlm::experiments::rlaif::{RlaifConfig, VqaDataset, VqaRows};

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
/// (RLAIF-V: a seeded sample per source; OK-VQA: the first rows).
pub fn load_rows(
    args: &Args,
    files: &DataFiles,
    config: &RlaifConfig,
    clients: usize,
) -> Result<LoadedRows, AnyError> {
    let cap = config
        .max_samples_per_client
        .map(|c| c.saturating_mul(clients));
    Ok(match files {
        DataFiles::RlaifV(shards) => {
            let mut options = RlaifVOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples_per_source(cap).sample_seed(config.seed);
            }
            LoadedRows::RlaifV(RlaifV::load_files(&shards.files, &options)?)
        }
        DataFiles::OkVqa(files) => {
            let mut options = OkVqaOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples(cap);
            }
            LoadedRows::OkVqa(OkVqa::load_files(&files.files, &options)?)
        }
    })
}

//! `--dataset rlaif-v|okvqa`: finding and reading the rows of either dataset.

use std::sync::Arc;

use fedvlm::data::{
    OkVqaFiles, OkVqaOptions, OkVqaSample, RlaifVOptions, RlaifVSample, RlaifVShards, read_okvqa,
    read_rlaif_v,
};
use fedvlm::experiments::rlaif::{RlaifConfig, SpilledRows, VqaDataset, VqaRow, VqaRows};
use fedvlm::experiments::vqa::ImageStore;

use super::{AnyError, Args};

/// The files of `--data-dir`, or of the dataset's hub repository (downloaded when online).
pub enum DataFiles {
    /// RLAIF-V shards.
    RlaifV(RlaifVShards),
    /// OK-VQA parquet files.
    OkVqa(OkVqaFiles),
}

/// The rows read: their images and text wait in the image store's file, so that memory does
/// not grow with the row count.
pub struct LoadedRows {
    rows: SpilledRows,
    summary: String,
}

impl LoadedRows {
    /// The rows, for `RlaifData::prepare` and the sweep.
    pub fn rows(&self) -> VqaRows<'_> {
        VqaRows::from(&self.rows)
    }

    /// What the read found, for the log.
    pub fn summary(&self) -> &str {
        &self.summary
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
/// (RLAIF-V: a seeded sample per source; OK-VQA: the first rows). Every row's image and text
/// move into `store` as the row is read (see [`SpilledRows`]).
pub fn load_rows(
    args: &Args,
    files: &DataFiles,
    config: &RlaifConfig,
    clients: usize,
    store: &Arc<ImageStore>,
) -> Result<LoadedRows, AnyError> {
    let cap = config
        .max_samples_per_client
        .map(|c| c.saturating_mul(clients));
    let mut rows = SpilledRows::new(args.dataset, Arc::clone(store));
    let mut failed = None;
    let mut spill = |row: VqaRow<'_>| {
        if failed.is_none()
            && let Err(e) = rows.push(row)
        {
            failed = Some(e);
        }
    };
    let summary = match files {
        DataFiles::RlaifV(shards) => {
            let mut options = RlaifVOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples_per_source(cap).sample_seed(config.seed);
            }
            read_rlaif_v(&shards.files, &options, |s: RlaifVSample| {
                spill(VqaRow::RlaifV(&s));
            })?
            .to_string()
        }
        DataFiles::OkVqa(files) => {
            let mut options = OkVqaOptions::new().strict(args.strict);
            if let Some(cap) = cap {
                options = options.max_samples(cap);
            }
            read_okvqa(&files.files, &options, |s: OkVqaSample| {
                spill(VqaRow::OkVqa(&s));
            })?
            .to_string()
        }
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(LoadedRows { rows, summary })
}

//! Finding the RLAIF-V shards: a local folder, or the Hugging Face hub dataset through the
//! standard Hugging Face cache (same options and cache as the Florence-2 checkpoints).

use std::path::{Path, PathBuf};

use super::reader::{RLAIF_V_SHARD_PATTERN, is_rlaif_v_shard, rlaif_v_shards};
use crate::data::DataError;
use crate::data::hub_files::{DatasetFiles, DatasetSource};
use crate::models::florence2::hub::HubOptions;

/// The hub dataset id of RLAIF-V.
pub const RLAIF_V_REPO: &str = "openbmb/RLAIF-V-Dataset";

/// Where the shards came from.
pub type RlaifVSource = DatasetSource;

/// How RLAIF-V's shards are told apart.
const RLAIF_V_FILES: DatasetFiles = DatasetFiles {
    repo_hint: RLAIF_V_REPO,
    pattern: RLAIF_V_SHARD_PATTERN,
    is_file: is_rlaif_v_shard,
    local: rlaif_v_shards_in,
};

fn rlaif_v_shards_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    rlaif_v_shards(dir)
}

/// The shard files of RLAIF-V on disk, sorted by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlaifVShards {
    /// The `RLAIF-V-Dataset_*.parquet` files.
    pub files: Vec<PathBuf>,
    /// Where they came from.
    pub source: RlaifVSource,
}

impl RlaifVShards {
    /// Resolves `dataset` with [`HubOptions::from_env`]: an existing folder (read as is, never
    /// touching the network), else a hub dataset id such as [`RLAIF_V_REPO`].
    ///
    /// # Errors
    /// As [`Self::resolve_with`].
    pub fn resolve(dataset: &str) -> Result<Self, DataError> {
        Self::resolve_with(dataset, &HubOptions::from_env())
    }

    /// Resolves `dataset` (a folder or a hub dataset id) with explicit options. An existing
    /// folder always wins over a hub id of the same spelling.
    ///
    /// # Errors
    /// [`DataError::InvalidArgument`] when `dataset` is neither; otherwise as
    /// [`Self::from_dir`] or [`Self::from_hub`].
    pub fn resolve_with(dataset: &str, options: &HubOptions) -> Result<Self, DataError> {
        RLAIF_V_FILES.resolve(dataset, options).map(Self::from)
    }

    /// The shards of a local folder.
    ///
    /// # Errors
    /// As [`rlaif_v_shards`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        RLAIF_V_FILES.in_dir(dir.as_ref()).map(Self::from)
    }

    /// The shards of a hub dataset: offline, the ones in the cache; online, every shard the
    /// repository lists, downloaded into the cache when missing (with a progress bar when
    /// [`HubOptions::progress`] is set).
    ///
    /// # Errors
    /// Offline: [`DataError::NotInHubCache`] when the cache holds no shard of the revision.
    /// Online: [`DataError::Hub`] when the hub cannot be reached or a download fails,
    /// [`DataError::NoShards`] when the repository lists no shard.
    pub fn from_hub(repo_id: &str, options: &HubOptions) -> Result<Self, DataError> {
        RLAIF_V_FILES.on_hub(repo_id, options).map(Self::from)
    }
}

impl From<(Vec<PathBuf>, DatasetSource)> for RlaifVShards {
    fn from((files, source): (Vec<PathBuf>, DatasetSource)) -> Self {
        Self { files, source }
    }
}

//! Finding the OK-VQA parquet files: a local folder, or the Hugging Face hub dataset through
//! the standard Hugging Face cache (same options and cache as RLAIF-V and the checkpoints).

use std::path::{Path, PathBuf};

use super::reader::{OKVQA_FILE_PATTERN, is_okvqa_file, okvqa_files};
use crate::data::DataError;
use crate::data::hub_files::{DatasetFiles, DatasetSource};
use crate::models::florence2::hub::HubOptions;

/// The hub dataset id of OK-VQA in parquet: `lmms-lab/OK-VQA`, split `val2014` (5046
/// questions) in `data/val2014-*.parquet`, columns `question_id`, `image` (`{bytes, path}`),
/// `question`, `answers` (ten strings), `question_type`, `answer_type`.
pub const OKVQA_REPO: &str = "lmms-lab/OK-VQA";

/// Where the files came from.
pub type OkVqaSource = DatasetSource;

/// How OK-VQA's files are told apart.
const OKVQA_FILES: DatasetFiles = DatasetFiles {
    repo_hint: OKVQA_REPO,
    pattern: OKVQA_FILE_PATTERN,
    is_file: is_okvqa_file,
    local: okvqa_files_in,
};

fn okvqa_files_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    okvqa_files(dir)
}

/// The OK-VQA parquet files on disk, sorted by file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkVqaFiles {
    /// The `val2014-*.parquet` files.
    pub files: Vec<PathBuf>,
    /// Where they came from.
    pub source: OkVqaSource,
}

impl OkVqaFiles {
    /// Resolves `dataset` with [`HubOptions::from_env`]: an existing folder (read as is, never
    /// touching the network), else a hub dataset id such as [`OKVQA_REPO`].
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
        OKVQA_FILES.resolve(dataset, options).map(Self::from)
    }

    /// The files of a local folder (directly inside it, or in its `data/` sub-folder).
    ///
    /// # Errors
    /// As [`okvqa_files`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        OKVQA_FILES.in_dir(dir.as_ref()).map(Self::from)
    }

    /// The files of a hub dataset: offline, the ones in the cache; online, every
    /// `val2014-*.parquet` the repository lists, downloaded into the cache when missing.
    ///
    /// # Errors
    /// Offline: [`DataError::NotInHubCache`] when the cache holds none of the revision's
    /// files. Online: [`DataError::Hub`] when the hub cannot be reached or a download fails,
    /// [`DataError::NoShards`] when the repository lists no such file.
    pub fn from_hub(repo_id: &str, options: &HubOptions) -> Result<Self, DataError> {
        OKVQA_FILES.on_hub(repo_id, options).map(Self::from)
    }
}

impl From<(Vec<PathBuf>, DatasetSource)> for OkVqaFiles {
    fn from((files, source): (Vec<PathBuf>, DatasetSource)) -> Self {
        Self { files, source }
    }
}

//! Finding the OK-VQA parquet files: a local folder, or the Hugging Face hub dataset through
//! the standard Hugging Face cache (same options and cache as RLAIF-V and the checkpoints).

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use super::reader::{OKVQA_FILE_PATTERN, is_okvqa_file, okvqa_files};
use crate::data::DataError;
use crate::data::rlaif_v::{cached_files, download_files};
use crate::models::florence2::hub::{HubOptions, is_hub_id};

/// The hub dataset id of OK-VQA in parquet: `lmms-lab/OK-VQA`, split `val2014` (5046
/// questions) in `data/val2014-*.parquet`, columns `question_id`, `image` (`{bytes, path}`),
/// `question`, `answers` (ten strings), `question_type`, `answer_type`.
pub const OKVQA_REPO: &str = "lmms-lab/OK-VQA";

/// Where the files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OkVqaSource {
    /// A local folder.
    Local(PathBuf),
    /// A hub dataset, through the cache.
    Hub {
        /// The hub dataset id.
        repo: String,
        /// The revision.
        revision: String,
    },
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
        let path = Path::new(dataset);
        if path.is_dir() {
            Self::from_dir(path)
        } else if is_hub_id(dataset) {
            Self::from_hub(dataset, options)
        } else {
            Err(DataError::InvalidArgument {
                field: "dataset",
                reason: format!(
                    "`{dataset}` is neither a folder nor a hub dataset id such as {OKVQA_REPO}"
                ),
            })
        }
    }

    /// The files of a local folder (directly inside it, or in its `data/` sub-folder).
    ///
    /// # Errors
    /// As [`okvqa_files`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        Ok(Self {
            files: okvqa_files(dir)?,
            source: OkVqaSource::Local(dir.to_path_buf()),
        })
    }

    /// The files of a hub dataset: offline, the ones in the cache; online, every
    /// `val2014-*.parquet` the repository lists, downloaded into the cache when missing.
    ///
    /// # Errors
    /// Offline: [`DataError::NotInHubCache`] when the cache holds none of the revision's
    /// files. Online: [`DataError::Hub`] when the hub cannot be reached or a download fails,
    /// [`DataError::NoShards`] when the repository lists no such file.
    pub fn from_hub(repo_id: &str, options: &HubOptions) -> Result<Self, DataError> {
        let repo = Repo::with_revision(
            repo_id.to_string(),
            RepoType::Dataset,
            options.revision.clone(),
        );
        let source = OkVqaSource::Hub {
            repo: repo_id.to_string(),
            revision: options.revision.clone(),
        };
        let files = if options.offline {
            let files = cached_files(&options.cache_dir, &repo, &options.revision, is_okvqa_file);
            if files.is_empty() {
                return Err(DataError::NotInHubCache {
                    repo: repo_id.to_string(),
                    revision: options.revision.clone(),
                    pattern: OKVQA_FILE_PATTERN.to_string(),
                    cache: options.cache_dir.display().to_string(),
                });
            }
            files
        } else {
            download_files(repo_id, repo, options, is_okvqa_file, OKVQA_FILE_PATTERN)?
        };
        Ok(Self { files, source })
    }
}

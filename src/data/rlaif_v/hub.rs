//! Finding the RLAIF-V shards: a local folder, or the Hugging Face hub dataset through the
//! standard Hugging Face cache (same options and cache as the Florence-2 checkpoints).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::reader::{RLAIF_V_SHARD_PATTERN, is_rlaif_v_shard, rlaif_v_shards};
use crate::data::DataError;
use crate::models::florence2::hub::{HubOptions, is_hub_id};

/// The hub dataset id of RLAIF-V.
pub const RLAIF_V_REPO: &str = "openbmb/RLAIF-V-Dataset";

/// Where the shards came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RlaifVSource {
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
        let path = Path::new(dataset);
        if path.is_dir() {
            Self::from_dir(path)
        } else if is_hub_id(dataset) {
            Self::from_hub(dataset, options)
        } else {
            Err(DataError::InvalidArgument {
                field: "dataset",
                reason: format!(
                    "`{dataset}` is neither a folder nor a hub dataset id such as {RLAIF_V_REPO}"
                ),
            })
        }
    }

    /// The shards of a local folder.
    ///
    /// # Errors
    /// As [`rlaif_v_shards`].
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        Ok(Self {
            files: rlaif_v_shards(dir)?,
            source: RlaifVSource::Local(dir.to_path_buf()),
        })
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
        let repo = Repo::with_revision(
            repo_id.to_string(),
            RepoType::Dataset,
            options.revision.clone(),
        );
        let source = RlaifVSource::Hub {
            repo: repo_id.to_string(),
            revision: options.revision.clone(),
        };
        if options.offline {
            let files = cached_files(
                &options.cache_dir,
                &repo,
                &options.revision,
                is_rlaif_v_shard,
            );
            if files.is_empty() {
                return Err(DataError::NotInHubCache {
                    repo: repo_id.to_string(),
                    revision: options.revision.clone(),
                    pattern: RLAIF_V_SHARD_PATTERN.to_string(),
                    cache: options.cache_dir.display().to_string(),
                });
            }
            return Ok(Self { files, source });
        }
        let files = download_files(
            repo_id,
            repo,
            options,
            is_rlaif_v_shard,
            RLAIF_V_SHARD_PATTERN,
        )?;
        Ok(Self { files, source })
    }
}

/// The files of `repo` at `revision` in the hub cache `cache_dir` whose names pass
/// `is_shard` (the revision's snapshot folder, searched two folders deep), sorted by file
/// name; empty when there are none.
pub(crate) fn cached_files(
    cache_dir: &Path,
    repo: &Repo,
    revision: &str,
    is_shard: fn(&str) -> bool,
) -> Vec<PathBuf> {
    let repo_dir = cache_dir.join(repo.folder_name());
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let mut files = Vec::new();
    collect_shards(
        &repo_dir.join("snapshots").join(commit),
        2,
        is_shard,
        &mut files,
    );
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files
}

fn collect_shards(dir: &Path, depth: usize, is_shard: fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() && depth > 0 {
            collect_shards(&path, depth - 1, is_shard, out);
        } else if path.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_shard)
        {
            out.push(path);
        }
    }
}

/// Lists the repository's files whose base names pass `is_shard` and fetches each (hf-hub
/// reuses cached files), sorted by base name. `pattern` names them in errors.
pub(crate) fn download_files(
    repo_id: &str,
    repo: Repo,
    options: &HubOptions,
    is_shard: fn(&str) -> bool,
    pattern: &str,
) -> Result<Vec<PathBuf>, DataError> {
    let failed = |what: &str, reason: String| DataError::Hub {
        repo: repo_id.to_string(),
        what: what.to_string(),
        reason,
    };
    let mut builder = ApiBuilder::from_cache(Cache::new(options.cache_dir.clone()))
        .with_progress(options.progress);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    if options.token.is_some() {
        builder = builder.with_token(options.token.clone());
    }
    let api = builder
        .build()
        .map_err(|e| failed("repository info", e.to_string()))?
        .repo(repo);
    let info = api
        .info()
        .map_err(|e| failed("repository info", e.to_string()))?;
    let mut names: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|name| {
            let base = name.rsplit('/').next().unwrap_or(name);
            is_shard(base)
        })
        .collect();
    if names.is_empty() {
        return Err(DataError::NoShards {
            dir: format!("hub dataset {repo_id} (revision {})", options.revision),
            pattern: pattern.to_string(),
        });
    }
    names.sort_by(|a, b| {
        let base = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
        base(a).cmp(&base(b))
    });
    names
        .iter()
        .map(|name| api.get(name).map_err(|e| failed(name, e.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::is_hub_id;

    #[test]
    fn hub_ids() {
        assert!(is_hub_id("openbmb/RLAIF-V-Dataset"));
        assert!(is_hub_id("squad")); // canonical datasets have no organisation
        for bad in ["", "/abs/dir", "./rel", "a/b/c", "org/..", "a b/c"] {
            assert!(!is_hub_id(bad), "{bad}");
        }
    }
}

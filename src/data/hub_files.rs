//! Finding a parquet dataset's files: a local folder, or a Hugging Face hub dataset through the
//! standard Hugging Face cache (same options and cache as the Florence-2 checkpoints). RLAIF-V
//! ([`crate::data::RlaifVShards`]) and OK-VQA ([`crate::data::OkVqaFiles`]) both resolve here.

use std::path::{Path, PathBuf};

use hf_hub::{Repo, RepoType};

use crate::data::DataError;
use crate::models::florence2::hub::{HubOptions, is_hub_id};

/// Where a dataset's files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSource {
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

/// What tells one dataset's files apart.
pub(crate) struct DatasetFiles {
    /// The dataset's usual hub id, named in errors.
    pub repo_hint: &'static str,
    /// The file-name pattern, named in errors.
    pub pattern: &'static str,
    /// Whether a base file name is one of the dataset's files.
    pub is_file: fn(&str) -> bool,
    /// The files of a local folder.
    pub local: fn(&Path) -> Result<Vec<PathBuf>, DataError>,
}

impl DatasetFiles {
    /// Resolves `dataset`: an existing folder (read as is, never touching the network; it
    /// wins over a hub id of the same spelling), else a hub dataset id.
    pub fn resolve(
        &self,
        dataset: &str,
        options: &HubOptions,
    ) -> Result<(Vec<PathBuf>, DatasetSource), DataError> {
        let path = Path::new(dataset);
        if path.is_dir() {
            self.in_dir(path)
        } else if is_hub_id(dataset) {
            self.on_hub(dataset, options)
        } else {
            Err(DataError::InvalidArgument {
                field: "dataset",
                reason: format!(
                    "`{dataset}` is neither a folder nor a hub dataset id such as {}",
                    self.repo_hint
                ),
            })
        }
    }

    /// The files of a local folder.
    pub fn in_dir(&self, dir: &Path) -> Result<(Vec<PathBuf>, DatasetSource), DataError> {
        Ok(((self.local)(dir)?, DatasetSource::Local(dir.to_path_buf())))
    }

    /// The files of a hub dataset: offline, the ones in the cache; online, every matching file
    /// the repository lists, downloaded into the cache when missing.
    pub fn on_hub(
        &self,
        repo_id: &str,
        options: &HubOptions,
    ) -> Result<(Vec<PathBuf>, DatasetSource), DataError> {
        let repo = Repo::with_revision(
            repo_id.to_string(),
            RepoType::Dataset,
            options.revision.clone(),
        );
        let source = DatasetSource::Hub {
            repo: repo_id.to_string(),
            revision: options.revision.clone(),
        };
        let files = if options.offline {
            let files = cached_files(&options.cache_dir, &repo, &options.revision, self.is_file);
            if files.is_empty() {
                return Err(DataError::NotInHubCache {
                    repo: repo_id.to_string(),
                    revision: options.revision.clone(),
                    pattern: self.pattern.to_string(),
                    cache: options.cache_dir.display().to_string(),
                });
            }
            files
        } else {
            download_files(repo_id, repo, options, self.is_file, self.pattern)?
        };
        Ok((files, source))
    }
}

/// The files of `repo` at `revision` in the hub cache `cache_dir` whose names pass
/// `is_file` (the revision's snapshot folder, searched two folders deep), sorted by file
/// name; empty when there are none.
fn cached_files(
    cache_dir: &Path,
    repo: &Repo,
    revision: &str,
    is_file: fn(&str) -> bool,
) -> Vec<PathBuf> {
    let repo_dir = cache_dir.join(repo.folder_name());
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| revision.to_string());
    let mut files = Vec::new();
    collect_files(
        &repo_dir.join("snapshots").join(commit),
        2,
        is_file,
        &mut files,
    );
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    files
}

fn collect_files(dir: &Path, depth: usize, is_file: fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.is_dir() && depth > 0 {
            collect_files(&path, depth - 1, is_file, out);
        } else if path.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_file)
        {
            out.push(path);
        }
    }
}

/// Lists the repository's files whose base names pass `is_file` and fetches each (hf-hub
/// reuses cached files), sorted by base name. `pattern` names them in errors.
fn download_files(
    repo_id: &str,
    repo: Repo,
    options: &HubOptions,
    is_file: fn(&str) -> bool,
    pattern: &str,
) -> Result<Vec<PathBuf>, DataError> {
    let failed = |what: &str, reason: String| DataError::Hub {
        repo: repo_id.to_string(),
        what: what.to_string(),
        reason,
    };
    let api = options
        .api_builder()
        .build()
        .map_err(|e| failed("repository info", e.to_string()))?
        .repo(repo);
    let info = api
        .info()
        .map_err(|e| failed("repository info", e.to_string()))?;
    let base = |n: &str| n.rsplit('/').next().unwrap_or(n).to_string();
    let mut names: Vec<String> = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .filter(|name| is_file(&base(name)))
        .collect();
    if names.is_empty() {
        return Err(DataError::NoShards {
            dir: format!("hub dataset {repo_id} (revision {})", options.revision),
            pattern: pattern.to_string(),
        });
    }
    names.sort_by_key(|n| base(n));
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

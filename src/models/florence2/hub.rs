//! Finding a Florence-2 checkpoint's files: a local folder, or a Hugging Face Hub model id
//! downloaded into the standard Hugging Face cache.
//!
//! ```no_run
//! use fedvlm::models::florence2::hub::Florence2Files;
//!
//! // A hub id (cached under ~/.cache/huggingface/hub, HF_HOME or HF_HUB_CACHE) ...
//! let files = Florence2Files::resolve("microsoft/Florence-2-base")?;
//! // ... or a folder with config.json, model.safetensors or pytorch_model.bin, tokenizer.json.
//! let files = Florence2Files::resolve("./Florence-2-base")?;
//! println!("{}", files.weights.display());
//! # Ok::<(), fedvlm::models::florence2::hub::HubError>(())
//! ```
//!
//! With `HF_HUB_OFFLINE=1` only the cache is read; a file that is not there is a
//! [`HubError::NotInCache`]. Online, files already in the cache for the requested revision are
//! used without contacting the hub; missing ones are downloaded with a progress bar.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use thiserror::Error;

/// The model configuration file.
pub const CONFIG_FILE: &str = "config.json";
/// transformers' weights file (native layout).
pub const SAFETENSORS_FILE: &str = "model.safetensors";
/// Microsoft's weights file (original layout, a PyTorch pickle).
pub const PYTORCH_FILE: &str = "pytorch_model.bin";
/// The tokenizer file.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The image processor configuration (optional).
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

/// Why a checkpoint's files could not be found.
#[derive(Debug, Error)]
pub enum HubError {
    /// `model` is neither an existing folder nor a valid hub id.
    #[error("`{0}` is not a folder, nor a hub model id such as microsoft/Florence-2-base")]
    InvalidModel(String),
    /// A local folder lacks a required file.
    #[error("{dir}: missing {file}")]
    MissingFile {
        /// The folder.
        dir: PathBuf,
        /// The file (for weights: `model.safetensors or pytorch_model.bin`).
        file: String,
    },
    /// Offline, a required file is not in the cache.
    #[error(
        "{repo} (revision {revision}): {file} is not in the Hugging Face cache {cache} and \
         HF_HUB_OFFLINE is set"
    )]
    NotInCache {
        /// The hub id.
        repo: String,
        /// The revision.
        revision: String,
        /// The file (for weights: `model.safetensors or pytorch_model.bin`).
        file: String,
        /// The cache folder searched.
        cache: PathBuf,
    },
    /// The repository on the hub lacks a required file.
    #[error("{repo} (revision {revision}) on the hub has no {file}")]
    NotOnHub {
        /// The hub id.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
    },
    /// Talking to the hub or downloading failed.
    #[error("{repo}: cannot fetch {what}: {reason}")]
    Download {
        /// The hub id.
        repo: String,
        /// The file, or `repository info`.
        what: String,
        /// What went wrong.
        reason: String,
    },
}

/// Where [`Florence2Files::resolve_with`] looks and whether it may download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Read only the cache (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// The hub cache folder (the one holding `models--org--name` folders).
    pub cache_dir: PathBuf,
    /// The branch, tag or commit (default `main`).
    pub revision: String,
    /// The hub's address (`HF_ENDPOINT`), `None` for huggingface.co.
    pub endpoint: Option<String>,
    /// An access token (`HF_TOKEN`); without one, hf-hub reads the cache's `token` file.
    pub token: Option<String>,
    /// Show a progress bar while downloading.
    pub progress: bool,
}

impl HubOptions {
    /// An hf-hub API builder on these options' cache, endpoint, token and progress setting.
    pub(crate) fn api_builder(&self) -> ApiBuilder {
        let mut builder =
            ApiBuilder::from_cache(Cache::new(self.cache_dir.clone())).with_progress(self.progress);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if self.token.is_some() {
            builder = builder.with_token(self.token.clone());
        }
        builder
    }

    /// The options the environment sets, as Python's `huggingface_hub` reads them:
    /// `HF_HUB_OFFLINE` (`1`, `true`, `yes`, `on`; `TRANSFORMERS_OFFLINE` too), the cache folder
    /// from `HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`, `HF_ENDPOINT`,
    /// `HF_TOKEN`.
    pub fn from_env() -> Self {
        Self::from_vars(|key| std::env::var(key).ok())
    }

    /// [`Self::from_env`] with the variables looked up by `var` (for tests and embedding).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let truthy = |key: &str| {
            var(key).is_some_and(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
        };
        let non_empty = |key: &str| var(key).filter(|v| !v.is_empty());
        let cache_dir = match (non_empty("HF_HUB_CACHE"), non_empty("HF_HOME")) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(home)) => PathBuf::from(home).join("hub"),
            (None, None) => Cache::default().path().clone(),
        };
        Self {
            offline: truthy("HF_HUB_OFFLINE") || truthy("TRANSFORMERS_OFFLINE"),
            cache_dir,
            revision: "main".to_string(),
            endpoint: non_empty("HF_ENDPOINT"),
            token: non_empty("HF_TOKEN"),
            progress: true,
        }
    }
}

/// The weights file's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// `model.safetensors`: transformers' native keys.
    Safetensors,
    /// `pytorch_model.bin`: Microsoft's original keys, a PyTorch pickle.
    PytorchBin,
}

/// Where the files came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local folder.
    Local(PathBuf),
    /// A hub repository, through the cache.
    Hub {
        /// The hub id.
        repo: String,
        /// The revision.
        revision: String,
    },
}

/// The files of a Florence-2 checkpoint on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Florence2Files {
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors` (preferred) or `pytorch_model.bin`.
    pub weights: PathBuf,
    /// Which of the two [`Self::weights`] is.
    pub weights_format: WeightsFormat,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `preprocessor_config.json`, when there is one.
    pub preprocessor_config: Option<PathBuf>,
    /// Where they came from.
    pub source: ModelSource,
}

const WEIGHTS_FILES: [(&str, WeightsFormat); 2] = [
    (SAFETENSORS_FILE, WeightsFormat::Safetensors),
    (PYTORCH_FILE, WeightsFormat::PytorchBin),
];
const EITHER_WEIGHTS: &str = "model.safetensors or pytorch_model.bin";

/// A hub id is `name` or `org/name` with letters, digits, `-`, `_`, `.`; no `..`, no leading
/// or trailing `-`/`.`. Model and dataset ids follow the same rule.
pub(crate) fn is_hub_id(model: &str) -> bool {
    let parts: Vec<&str> = model.split('/').collect();
    !model.is_empty()
        && parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.contains("..")
                && !p.starts_with(['-', '.'])
                && !p.ends_with(['-', '.'])
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
}

impl Florence2Files {
    /// Resolves `model` (a local folder or a hub id) with [`HubOptions::from_env`].
    pub fn resolve(model: &str) -> Result<Self, HubError> {
        Self::resolve_with(model, &HubOptions::from_env())
    }

    /// Resolves `model` with explicit options. An existing folder always wins over a hub id of
    /// the same spelling.
    pub fn resolve_with(model: &str, options: &HubOptions) -> Result<Self, HubError> {
        let path = Path::new(model);
        if path.is_dir() {
            Self::from_dir(path)
        } else if is_hub_id(model) {
            Self::from_hub(model, options)
        } else {
            Err(HubError::InvalidModel(model.to_string()))
        }
    }

    /// The files of a local folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, HubError> {
        let dir = dir.as_ref();
        let require = |file: &str| {
            let path = dir.join(file);
            match path.is_file() {
                true => Ok(path),
                false => Err(HubError::MissingFile {
                    dir: dir.to_path_buf(),
                    file: file.to_string(),
                }),
            }
        };
        let config = require(CONFIG_FILE)?;
        let (weights, weights_format) = WEIGHTS_FILES
            .iter()
            .map(|(file, format)| (dir.join(file), *format))
            .find(|(path, _)| path.is_file())
            .ok_or_else(|| HubError::MissingFile {
                dir: dir.to_path_buf(),
                file: EITHER_WEIGHTS.to_string(),
            })?;
        let tokenizer = require(TOKENIZER_FILE)?;
        let preprocessor = dir.join(PREPROCESSOR_FILE);
        Ok(Self {
            config,
            weights,
            weights_format,
            tokenizer,
            preprocessor_config: preprocessor.is_file().then_some(preprocessor),
            source: ModelSource::Local(dir.to_path_buf()),
        })
    }

    /// The files of a hub repository: from the cache, downloaded when missing and online.
    pub fn from_hub(repo_id: &str, options: &HubOptions) -> Result<Self, HubError> {
        let repo = Repo::with_revision(
            repo_id.to_string(),
            RepoType::Model,
            options.revision.clone(),
        );
        let cache = Cache::new(options.cache_dir.clone()).repo(repo.clone());
        let source = ModelSource::Hub {
            repo: repo_id.to_string(),
            revision: options.revision.clone(),
        };
        let cached_weights = WEIGHTS_FILES
            .iter()
            .find_map(|(file, format)| cache.get(file).map(|p| (p, *format)));
        let cached = (
            cache.get(CONFIG_FILE),
            cached_weights,
            cache.get(TOKENIZER_FILE),
        );
        if let (Some(config), Some((weights, weights_format)), Some(tokenizer)) = cached {
            return Ok(Self {
                config,
                weights,
                weights_format,
                tokenizer,
                preprocessor_config: cache.get(PREPROCESSOR_FILE),
                source,
            });
        }
        if options.offline {
            let file = match cached {
                (None, _, _) => CONFIG_FILE,
                (_, None, _) => EITHER_WEIGHTS,
                _ => TOKENIZER_FILE,
            };
            return Err(HubError::NotInCache {
                repo: repo_id.to_string(),
                revision: options.revision.clone(),
                file: file.to_string(),
                cache: options.cache_dir.clone(),
            });
        }
        Self::download(repo_id, repo, options, source)
    }

    fn download(
        repo_id: &str,
        repo: Repo,
        options: &HubOptions,
        source: ModelSource,
    ) -> Result<Self, HubError> {
        let failed = |what: &str, reason: String| HubError::Download {
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
        let has = |file: &str| info.siblings.iter().any(|s| s.rfilename == file);
        let missing = |file: &str| HubError::NotOnHub {
            repo: repo_id.to_string(),
            revision: options.revision.clone(),
            file: file.to_string(),
        };
        let get = |file: &str| api.get(file).map_err(|e| failed(file, e.to_string()));
        let (weights_file, weights_format) = WEIGHTS_FILES
            .iter()
            .copied()
            .find(|(file, _)| has(file))
            .ok_or_else(|| missing(EITHER_WEIGHTS))?;
        for file in [CONFIG_FILE, TOKENIZER_FILE] {
            if !has(file) {
                return Err(missing(file));
            }
        }
        Ok(Self {
            config: get(CONFIG_FILE)?,
            tokenizer: get(TOKENIZER_FILE)?,
            preprocessor_config: match has(PREPROCESSOR_FILE) {
                true => Some(get(PREPROCESSOR_FILE)?),
                false => None,
            },
            weights: get(weights_file)?,
            weights_format,
            source,
        })
    }

    /// The folder holding `config.json` (for a hub model, the cache's snapshot folder).
    pub fn dir(&self) -> &Path {
        self.config.parent().unwrap_or(Path::new("."))
    }
}

#[cfg(test)]
mod tests {
    use super::is_hub_id;

    #[test]
    fn hub_ids() {
        for ok in [
            "microsoft/Florence-2-base",
            "florence-community/Florence-2-large-ft",
            "gpt2",
            "a.b_c/d-e.f",
        ] {
            assert!(is_hub_id(ok), "{ok}");
        }
        for bad in [
            "",
            "/abs/path",
            "./rel",
            "a/b/c",
            "a//b",
            "org/..",
            "has space/x",
            "x/",
            "-x/y",
        ] {
            assert!(!is_hub_id(bad), "{bad}");
        }
    }
}

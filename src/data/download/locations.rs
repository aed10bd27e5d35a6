//! Where files live and whether the network may be used: the offline switch, the cache
//! folders.

use std::ffi::OsString;
use std::path::PathBuf;

/// Environment variables that switch downloads off (any of them truthy is enough).
pub const OFFLINE_ENV_VARS: [&str; 2] = ["FEDVLM_OFFLINE", "HF_HUB_OFFLINE"];

/// Whether the offline switch is on: `FEDVLM_OFFLINE` or `HF_HUB_OFFLINE` set to `1`,
/// `true`, `yes` or `on` (any case), as huggingface_hub reads `HF_HUB_OFFLINE`.
#[must_use]
pub fn is_offline() -> bool {
    OFFLINE_ENV_VARS
        .iter()
        .any(|var| std::env::var(var).map(|v| is_truthy(&v)).unwrap_or(false))
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

fn non_empty_env(var: &str) -> Option<OsString> {
    std::env::var_os(var).filter(|v| !v.is_empty())
}

fn home_dir() -> Option<PathBuf> {
    non_empty_env("HOME")
        .or_else(|| non_empty_env("USERPROFILE"))
        .map(PathBuf::from)
}

/// fedvlm's cache folder (datasets, converted weights): `$FEDVLM_CACHE`, else
/// `$XDG_CACHE_HOME/fedvlm`, else `$HOME/.cache/fedvlm` (`%USERPROFILE%` on Windows), else
/// `./.cache/fedvlm`. Nothing is created.
#[must_use]
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("FEDVLM_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("fedvlm");
    }
    home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".cache")
        .join("fedvlm")
}

/// Where torchvision keeps downloaded weights, so checkpoints Python already fetched are
/// reused: `$TORCH_HOME/hub/checkpoints`, else `$XDG_CACHE_HOME/torch/hub/checkpoints`, else
/// `$HOME/.cache/torch/hub/checkpoints` (torch.hub's `get_dir()` convention). Nothing is
/// created.
#[must_use]
pub fn torch_hub_checkpoints_dir() -> PathBuf {
    let torch_home = non_empty_env("TORCH_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            non_empty_env("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| home_dir().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("torch")
        });
    torch_home.join("hub").join("checkpoints")
}

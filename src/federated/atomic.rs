//! Crash-safe file writes: a reader sees the old file or the new one, never a torn one.

use std::io::Write;
use std::path::Path;

use crate::error::{FedError, Result};

/// Writes `bytes` to `path` atomically: into a temporary file beside it, flushed to disk
/// (`fsync`), then renamed over `path`, and the folder synced so the rename itself survives a
/// power cut. A crash at any point leaves either the previous file or the new one.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(|e| FedError::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| FedError::io(&tmp, e))?;
    file.sync_all().map_err(|e| FedError::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| FedError::io(path, e))?;
    // Persist the rename: sync the folder (not possible on every platform; best effort).
    if let Ok(folder) = std::fs::File::open(dir) {
        let _ = folder.sync_all();
    }
    Ok(())
}

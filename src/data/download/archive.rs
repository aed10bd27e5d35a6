//! Safe `.tar.gz` extraction.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Component, Path, PathBuf};

use crate::data::DataError;

/// Unpacks a `.tar.gz` archive into `into` (created if needed).
///
/// Only regular files and folders are written. Entries with an absolute path, a `..`
/// component or a drive prefix, and symbolic or hard links, are refused with
/// [`DataError::UnsafeArchiveEntry`] before anything of them is written (entries before it
/// stay extracted); PAX and GNU metadata entries are consumed silently. Permissions beyond
/// the file mode are not restored.
pub fn extract_tar_gz(archive: &Path, into: &Path) -> Result<(), DataError> {
    let file = File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let gz = flate2::read::GzDecoder::new(BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    fs::create_dir_all(into).map_err(|e| DataError::io(into, e))?;
    let bad = |e: std::io::Error| DataError::malformed(archive, format!("corrupt archive: {e}"));
    let entries = tar.entries().map_err(bad)?;
    for entry in entries {
        let mut entry = entry.map_err(bad)?;
        let raw_path = entry.path().map_err(bad)?.into_owned();
        let shown = raw_path.display().to_string();
        let refuse = |reason: &'static str| DataError::UnsafeArchiveEntry {
            archive: archive.display().to_string(),
            entry: shown.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        let is_dir = kind.is_dir();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        }
        if kind.is_symlink() || kind.is_hard_link() {
            return Err(refuse("links are not extracted"));
        }
        if !(kind.is_file() || kind.is_contiguous() || is_dir) {
            return Err(refuse("only regular files and folders are extracted"));
        }
        let mut relative = PathBuf::new();
        for component in raw_path.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                Component::ParentDir => return Err(refuse("path contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(refuse("absolute path"));
                }
            }
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = into.join(&relative);
        if is_dir {
            fs::create_dir_all(&target).map_err(|e| DataError::io(&target, e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        // A link planted earlier at the target (by another tool) must not redirect the write.
        if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refuse("target path is a symbolic link"));
        }
        entry
            .unpack(&target)
            .map(drop)
            .map_err(|e| DataError::io(&target, e))?;
    }
    Ok(())
}

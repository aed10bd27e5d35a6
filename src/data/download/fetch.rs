//! Streaming an HTTP(S) file into place, verified: [`Downloader`], [`download_file`].

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::checksum::{Checksum, hex};
use super::locations::is_offline;
use crate::data::DataError;

/// Download settings. [`download_file`] uses [`Downloader::from_env`]; build one by hand to
/// set the offline switch or timeouts without touching the environment.
///
/// The offline switch: with `FEDVLM_OFFLINE` or `HF_HUB_OFFLINE` set to `1`, `true`, `yes`
/// or `on`, [`Downloader::from_env`] sets [`Downloader::offline`] and nothing touches the
/// network; a needed download fails with [`DataError::Offline`], while files already in
/// place (and verified) are still used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloader {
    /// Show a progress bar (bytes / total) on stderr; it is hidden anyway when stderr is not
    /// a terminal.
    pub progress: bool,
    /// Refuse to touch the network ([`DataError::Offline`]).
    pub offline: bool,
    /// Limit for resolving and connecting (TLS handshake included).
    pub connect_timeout: Duration,
    /// Limit for each read from the connection (a stalled transfer fails after this).
    pub read_timeout: Duration,
}

impl Default for Downloader {
    fn default() -> Self {
        Self {
            progress: false,
            offline: false,
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
        }
    }
}

impl Downloader {
    /// Default timeouts, the given progress setting and the offline switch read from the
    /// environment ([`is_offline`]).
    #[must_use]
    pub fn from_env(progress: bool) -> Self {
        Self {
            progress,
            offline: is_offline(),
            ..Self::default()
        }
    }

    /// Makes sure `dest` holds the file at `url` and returns `dest`.
    ///
    /// 1. If `dest` exists and verifies against `checksum` (or `checksum` is `None`), it is
    ///    returned without any network access.
    /// 2. If the file is needed and [`Downloader::offline`] is set: [`DataError::Offline`]
    ///    (or [`DataError::ChecksumMismatch`] when an existing `dest` fails to verify).
    /// 3. Otherwise a blocking GET streams the body to `<dest>.<pid>.part` (the full file
    ///    name plus the process id and `.part`, so neither `a.tar.gz` and `a.tar.bz2` nor two
    ///    processes collide), hashing it on the way; a
    ///    digest mismatch deletes the partial file and fails with
    ///    [`DataError::ChecksumMismatch`]; on success the file is renamed to `dest`
    ///    (atomic on one file system). Parent folders are created.
    pub fn fetch(
        &self,
        url: &str,
        dest: &Path,
        checksum: Option<&Checksum>,
    ) -> Result<PathBuf, DataError> {
        if dest.is_file() {
            match checksum {
                None => return Ok(dest.to_path_buf()),
                Some(c) => match c.verify_file(dest) {
                    Ok(()) => return Ok(dest.to_path_buf()),
                    Err(e) if self.offline => return Err(e),
                    // A stale or corrupt file: fetch it again below.
                    Err(_) => {}
                },
            }
        }
        if self.offline {
            return Err(DataError::Offline {
                url: url.to_string(),
                dest: dest.display().to_string(),
            });
        }
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let part = part_path(dest);
        let result = self.fetch_to(url, &part, checksum);
        match result {
            Ok(()) => {
                fs::rename(&part, dest).map_err(|e| DataError::io(dest, e))?;
                Ok(dest.to_path_buf())
            }
            Err(e) => {
                // Best effort: a leftover partial file is harmless (overwritten next time).
                let _ = fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// GETs `url` into `part`, verifying the digest of what was written.
    fn fetch_to(
        &self,
        url: &str,
        part: &Path,
        checksum: Option<&Checksum>,
    ) -> Result<(), DataError> {
        let http_err = |reason: String| DataError::Http {
            url: url.to_string(),
            reason,
        };
        let mut builder = ureq::Agent::config_builder()
            .timeout_connect(Some(self.connect_timeout))
            .timeout_per_read(Some(self.read_timeout))
            .timeout_recv_response(Some(self.read_timeout))
            .user_agent(concat!("fedvlm/", env!("CARGO_PKG_VERSION")));
        if is_loopback_url(url) {
            // Never send requests for this machine through an HTTP(S)_PROXY.
            builder = builder.proxy(None);
        }
        let agent: ureq::Agent = builder.build().into();
        let mut response = agent
            .get(url)
            // Archives must arrive byte for byte as published (their digests are of the
            // compressed bytes), so ask the server not to add a transfer encoding.
            .header("Accept-Encoding", "identity")
            .call()
            .map_err(|e| http_err(e.to_string()))?;
        let total = response.body().content_length();
        let bar = progress_bar(self.progress, total, url);

        let file = File::create(part).map_err(|e| DataError::io(part, e))?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        let mut reader = response.body_mut().as_reader();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut written: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    bar.abandon();
                    return Err(http_err(format!("after {written} bytes: {e}")));
                }
            };
            hasher.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(|e| DataError::io(part, e))?;
            written += n as u64;
            bar.inc(n as u64);
        }
        writer.flush().map_err(|e| DataError::io(part, e))?;
        let file = writer
            .into_inner()
            .map_err(|e| DataError::io(part, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(part, e))?;
        bar.finish_and_clear();

        if let Some(expected) = total
            && written != expected
        {
            return Err(http_err(format!(
                "body has {written} bytes, Content-Length said {expected}"
            )));
        }
        if let Some(c) = checksum {
            let actual = hex(&hasher.finalize());
            if !c.matches_sha256(&actual) {
                return Err(DataError::ChecksumMismatch {
                    path: url.to_string(),
                    expected: c.expected(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// Makes sure `dest` holds the file at `url`, with the offline switch read from the
/// environment; see [`Downloader::fetch`] for the steps. `progress` shows a bar on stderr
/// (only when stderr is a terminal).
///
/// ```no_run
/// use std::path::Path;
/// use fedvlm::data::{Checksum, download_file, torch_hub_checkpoints_dir};
///
/// let name = "mobilenet_v3_small-047dcff4.pth";
/// let dest = torch_hub_checkpoints_dir().join(name);
/// let checksum = Checksum::from_torch_hub_filename(name);
/// let url = format!("https://download.pytorch.org/models/{name}");
/// download_file(&url, &dest, checksum.as_ref(), true)?;
/// # Ok::<(), fedvlm::data::DataError>(())
/// ```
pub fn download_file(
    url: &str,
    dest: &Path,
    checksum: Option<&Checksum>,
    progress: bool,
) -> Result<PathBuf, DataError> {
    Downloader::from_env(progress).fetch(url, dest, checksum)
}

/// `dest` with `.<pid>.part` appended to its file name, so two processes fetching the same
/// file do not write into one partial file (the last rename wins; both copies verified).
fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(OsString::from)
        .unwrap_or_else(|| OsString::from("download"));
    name.push(format!(".{}.part", std::process::id()));
    dest.with_file_name(name)
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn progress_bar(enabled: bool, total: Option<u64>, url: &str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let name = url.rsplit('/').next().unwrap_or(url).to_string();
    match total {
        Some(len) => {
            let style = ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            ProgressBar::new(len).with_style(style).with_message(name)
        }
        None => {
            let style =
                ProgressStyle::with_template("{spinner} {msg} {bytes} {binary_bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            ProgressBar::new_spinner()
                .with_style(style)
                .with_message(name)
        }
    }
}

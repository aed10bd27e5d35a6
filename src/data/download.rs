//! Fetching files (datasets, checkpoints) into a local cache, with checksums, an offline
//! switch and safe archive extraction.
//!
//! * [`download_file`] streams an HTTP(S) response to `<dest>.<pid>.part`, hashes it on the way,
//!   checks the digest and renames the file into place, so `dest` either does not exist or is
//!   complete and verified. An existing `dest` that verifies is reused without any network
//!   access.
//! * The offline switch: with `FEDVLM_OFFLINE` or `HF_HUB_OFFLINE` set to `1`, `true`, `yes`
//!   or `on`, nothing touches the network and a needed download fails with
//!   [`DataError::Offline`].
//! * [`cache_dir`] and [`torch_hub_checkpoints_dir`] say where files live;
//!   [`extract_tar_gz`] unpacks an archive without letting entries escape the target folder.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::DataError;

/// Environment variables that switch downloads off (any of them truthy is enough).
pub const OFFLINE_ENV_VARS: [&str; 2] = ["FEDVLM_OFFLINE", "HF_HUB_OFFLINE"];

/// How a downloaded (or cached) file is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// The full SHA-256 digest, hex (either case).
    Sha256(String),
    /// The first hex digits of the SHA-256 digest, as in torchvision/torch-hub file names
    /// (`mobilenet_v3_small-047dcff4.pth` carries `047dcff4`). See
    /// [`Checksum::from_torch_hub_filename`].
    Sha256Prefix(String),
}

impl Checksum {
    /// The checksum a torch-hub style file name carries: the hex digits between the first
    /// `-` followed by hex digits and the next `.`, as torch.hub's
    /// `HASH_REGEX = r"-([a-f0-9]*)\."` reads them (`resnet18-f37072fd.pth` -> `f37072fd`).
    /// `None` when the name carries no such part.
    ///
    /// ```
    /// use fedvlm::data::Checksum;
    /// assert_eq!(
    ///     Checksum::from_torch_hub_filename("mobilenet_v3_small-047dcff4.pth"),
    ///     Some(Checksum::Sha256Prefix("047dcff4".into()))
    /// );
    /// assert_eq!(Checksum::from_torch_hub_filename("model.safetensors"), None);
    /// ```
    #[must_use]
    pub fn from_torch_hub_filename(name: &str) -> Option<Self> {
        // regex search semantics: the first '-' whose following run of [a-f0-9] is
        // immediately followed by '.'.
        let bytes = name.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b != b'-' {
                continue;
            }
            let run = bytes[i + 1..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                .count();
            if run > 0 && bytes.get(i + 1 + run) == Some(&b'.') {
                return Some(Self::Sha256Prefix(name[i + 1..i + 1 + run].to_string()));
            }
        }
        None
    }

    /// The expected hex (lower case), as given.
    #[must_use]
    pub fn expected(&self) -> String {
        match self {
            Self::Sha256(h) | Self::Sha256Prefix(h) => h.to_ascii_lowercase(),
        }
    }

    /// Whether a full SHA-256 digest (lower-case hex) satisfies this checksum.
    #[must_use]
    pub fn matches_sha256(&self, digest_hex: &str) -> bool {
        let expected = self.expected();
        match self {
            Self::Sha256(_) => digest_hex.eq_ignore_ascii_case(&expected),
            Self::Sha256Prefix(_) => {
                !expected.is_empty()
                    && digest_hex.len() >= expected.len()
                    && digest_hex[..expected.len()].eq_ignore_ascii_case(&expected)
            }
        }
    }

    /// Checks a file on disk; [`DataError::ChecksumMismatch`] names it when it differs.
    pub fn verify_file(&self, path: &Path) -> Result<(), DataError> {
        let actual = sha256_file(path)?;
        if self.matches_sha256(&actual) {
            Ok(())
        } else {
            Err(DataError::ChecksumMismatch {
                path: path.display().to_string(),
                expected: self.expected(),
                actual,
            })
        }
    }
}

/// The SHA-256 digest of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

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

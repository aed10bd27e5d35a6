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

mod archive;
mod checksum;
mod fetch;
mod locations;

pub use archive::extract_tar_gz;
pub use checksum::{Checksum, sha256_file};
pub use fetch::{Downloader, download_file};
pub use locations::{OFFLINE_ENV_VARS, cache_dir, is_offline, torch_hub_checkpoints_dir};

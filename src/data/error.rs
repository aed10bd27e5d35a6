use std::path::Path;

use thiserror::Error;

/// Why a dataset could not be read, fetched or preprocessed.
///
/// Every variant that concerns a file names it, so a message such as
/// `".../data_batch_3.bin: expected 30730000 bytes, found 1234"` says which file to fix.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file is malformed.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A file the dataset needs does not exist.
    #[error("missing file {path}")]
    MissingFile {
        /// The file that was looked for.
        path: String,
    },
    /// A file does not have the size its format requires (for example a truncated batch).
    #[error("{path}: expected {expected} bytes, found {actual} (truncated or not this format)")]
    WrongSize {
        /// The file.
        path: String,
        /// The size the format requires.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A record's label is outside the dataset's classes.
    #[error("{path}: record {record} has label {label}, expected 0..={max}")]
    BadLabel {
        /// The file.
        path: String,
        /// The record's index within the file (0-based).
        record: usize,
        /// The label byte found.
        label: u8,
        /// The largest valid label.
        max: u8,
    },
    /// Reading or writing a file failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A download was needed but the offline switch (`FEDVLM_OFFLINE` or `HF_HUB_OFFLINE`) is
    /// on.
    #[error(
        "offline mode (FEDVLM_OFFLINE / HF_HUB_OFFLINE) forbids fetching {url}; \
         place the file at {dest} by hand or unset the switch"
    )]
    Offline {
        /// What would have been fetched.
        url: String,
        /// Where it was expected.
        dest: String,
    },
    /// The HTTP request failed (connection, TLS, status code, truncated body).
    #[error("downloading {url} failed: {reason}")]
    Http {
        /// The address requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A file's digest differs from the expected one.
    #[error("{path}: checksum mismatch, expected {expected}, found {actual}")]
    ChecksumMismatch {
        /// The file (or, for a download, the address it came from).
        path: String,
        /// The expected digest (or digest prefix), lower-case hex.
        expected: String,
        /// The digest found, lower-case hex.
        actual: String,
    },
    /// An archive holds an entry that would land outside the extraction folder (absolute
    /// path, `..`), a link, or an entry type that is not extracted.
    #[error("{archive}: refusing to extract entry {entry:?}: {reason}")]
    UnsafeArchiveEntry {
        /// The archive.
        archive: String,
        /// The entry's path as stored.
        entry: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An example index is past the end of a split.
    #[error("index {index} out of range for a split of {len} examples")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The split's length.
        len: usize,
    },
    /// An image buffer does not match its stated shape.
    #[error("image buffer has {actual} bytes, expected {expected} (3 x {height} x {width})")]
    ImageShape {
        /// Bytes expected: `3 * height * width`.
        expected: usize,
        /// Bytes found.
        actual: usize,
        /// The stated height.
        height: usize,
        /// The stated width.
        width: usize,
    },
    /// A preprocessing or dataset parameter is out of range.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// The parameter.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A file is not a readable parquet file: truncated, another format, or written with a
    /// compression codec this build does not decode.
    #[error("{path}: not a readable parquet file (truncated or another format?): {reason}")]
    NotParquet {
        /// The file.
        path: String,
        /// What the parquet reader reported.
        reason: String,
    },
    /// Reading a row group of a parquet file failed (corrupt page, unsupported codec).
    #[error("{path}: row group {row_group}: {reason}")]
    ParquetRead {
        /// The file.
        path: String,
        /// The row group (0-based).
        row_group: usize,
        /// What the parquet reader reported.
        reason: String,
    },
    /// A parquet file lacks a column the dataset needs, or the column has another type.
    #[error("{path}: column `{column}` {reason}")]
    MissingColumn {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// What is wrong (missing, wrong type).
        reason: String,
    },
    /// A dataset row is malformed and the reader runs in strict mode.
    #[error("{path}: row {row} (row group {row_group}, row {row_in_group} in it): {reason}")]
    MalformedRow {
        /// The file.
        path: String,
        /// The row group (0-based).
        row_group: usize,
        /// The row's index within the file (0-based).
        row: usize,
        /// The row's index within its row group (0-based).
        row_in_group: usize,
        /// What is wrong with the row.
        reason: crate::data::RlaifVSkip,
    },
    /// An OK-VQA row is malformed and the reader runs in strict mode.
    #[error("{path}: row {row} (row group {row_group}, row {row_in_group} in it): {reason}")]
    MalformedOkVqaRow {
        /// The file.
        path: String,
        /// The row group (0-based).
        row_group: usize,
        /// The row's index within the file (0-based).
        row: usize,
        /// The row's index within its row group (0-based).
        row_in_group: usize,
        /// What is wrong with the row.
        reason: crate::data::OkVqaSkip,
    },
    /// A folder holds none of a dataset's shard files.
    #[error("{dir}: no files named {pattern}")]
    NoShards {
        /// The folder searched.
        dir: String,
        /// The file name pattern (for example `RLAIF-V-Dataset_*.parquet`).
        pattern: String,
    },
    /// Offline, a hub dataset's files are not in the Hugging Face cache.
    #[error(
        "{repo} (revision {revision}): no {pattern} in the Hugging Face cache {cache} and \
         offline mode (HF_HUB_OFFLINE) is on; pass a local folder or go online"
    )]
    NotInHubCache {
        /// The hub dataset id.
        repo: String,
        /// The revision.
        revision: String,
        /// The file name pattern looked for.
        pattern: String,
        /// The cache folder searched.
        cache: String,
    },
    /// Talking to the Hugging Face hub or downloading from it failed.
    #[error("{repo}: cannot fetch {what}: {reason}")]
    Hub {
        /// The hub id.
        repo: String,
        /// The file, or `repository info`.
        what: String,
        /// What went wrong.
        reason: String,
    },
}

impl DataError {
    /// Builds a [`DataError::Io`] naming the path.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// Builds a [`DataError::Malformed`] naming the path.
    pub fn malformed(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.as_ref().display().to_string(),
            reason: reason.into(),
        }
    }
}

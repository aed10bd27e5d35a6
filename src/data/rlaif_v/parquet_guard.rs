//! Calls into the `parquet` crate on untrusted shards: validation where it is possible, and
//! `catch_unwind` where it is not.
//!
//! The crate panics on some corrupt files instead of returning an error: a negative column
//! offset or size in the footer (`ColumnChunkMetaData::byte_range` asserts; checked here first)
//! and truncated bit-packed levels in a page (`util::bit_util` asserts while decoding, found by
//! `tests/hostile_data.rs`; only `catch_unwind` helps there). Both become the reader's typed
//! errors.

use parquet::errors::ParquetError;
use parquet::file::metadata::RowGroupMetaData;

use crate::guard::no_panic;

/// The dependency named when it panics.
const PARQUET: &str = "the parquet reader";

/// Runs a call into the parquet crate under [`no_panic`]: its error, or its panic, as text.
pub(crate) fn parquet_call<T>(f: impl FnOnce() -> Result<T, ParquetError>) -> Result<T, String> {
    no_panic(PARQUET, f)?.map_err(|e| e.to_string())
}

/// As [`parquet_call`], for a call that cannot fail otherwise (an iterator's `next`).
pub(crate) fn parquet_step<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    no_panic(PARQUET, f)
}

/// Refuses a row group whose footer gives a column chunk a negative offset or size (the
/// parquet crate asserts on them when it reads the chunk).
pub(crate) fn check_column_chunks(group: &RowGroupMetaData) -> Result<(), String> {
    for column in group.columns() {
        let start = column
            .dictionary_page_offset()
            .unwrap_or_else(|| column.data_page_offset());
        if start < 0 || column.compressed_size() < 0 {
            return Err(format!(
                "column `{}` has a negative offset ({start}) or size ({}) in the footer",
                column.column_path().string(),
                column.compressed_size()
            ));
        }
    }
    Ok(())
}

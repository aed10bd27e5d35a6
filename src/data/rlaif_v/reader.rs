//! Reading RLAIF-V parquet shards, shard by shard and row group by row group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::TreeBuilder;
use parquet::record::{Field, Row};
use parquet::schema::types::SchemaDescriptor;

use super::keeper::{Admission, Keeper};
use super::parquet_guard::{check_column_chunks, parquet_call, parquet_step};
use super::sample::{
    ImageCheck, RlaifVOptions, RlaifVSample, RlaifVSkip, RlaifVSummary, decode_image,
    image_dimensions,
};
use super::schema::projection;
use crate::data::DataError;

/// The shard file name prefix (`RLAIF-V-Dataset_000.parquet`, ...).
pub const RLAIF_V_SHARD_PREFIX: &str = "RLAIF-V-Dataset_";
/// The shard file name suffix.
pub const RLAIF_V_SHARD_SUFFIX: &str = ".parquet";
/// The shard file name pattern, for messages.
pub const RLAIF_V_SHARD_PATTERN: &str = "RLAIF-V-Dataset_*.parquet";
/// The question column.
pub const QUESTION_COLUMN: &str = "question";
/// The preferred-answer column.
pub const CHOSEN_COLUMN: &str = "chosen";
/// The source-dataset column.
pub const ORIGIN_COLUMN: &str = "origin_dataset";
/// The image column: a struct `{bytes: binary, path: string}` as Hugging Face `datasets`
/// stores an `Image` feature (a plain binary column is accepted too).
pub const IMAGE_COLUMN: &str = "image";
/// The field of [`IMAGE_COLUMN`] holding the encoded image.
pub const IMAGE_BYTES_FIELD: &str = "bytes";

/// Rows decoded at a time per column: small, since one image value is often 100 kB.
const ROW_BATCH: usize = 32;

/// Whether `name` is an RLAIF-V shard file name (`RLAIF-V-Dataset_*.parquet`).
pub fn is_rlaif_v_shard(name: &str) -> bool {
    name.len() > RLAIF_V_SHARD_PREFIX.len() + RLAIF_V_SHARD_SUFFIX.len()
        && name.starts_with(RLAIF_V_SHARD_PREFIX)
        && name.ends_with(RLAIF_V_SHARD_SUFFIX)
}

/// The RLAIF-V shards directly inside `dir`, sorted by file name.
///
/// # Errors
/// [`DataError::Io`] when the folder cannot be listed, [`DataError::NoShards`] when it holds
/// no `RLAIF-V-Dataset_*.parquet`.
pub fn rlaif_v_shards(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, DataError> {
    let dir = dir.as_ref();
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        if path.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_rlaif_v_shard)
        {
            shards.push(path);
        }
    }
    if shards.is_empty() {
        return Err(DataError::NoShards {
            dir: dir.display().to_string(),
            pattern: RLAIF_V_SHARD_PATTERN.to_string(),
        });
    }
    shards.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(shards)
}

/// The RLAIF-V samples kept by a read, in shard and row order, with the read's summary.
#[derive(Debug, Clone, Default)]
pub struct RlaifV {
    samples: Vec<RlaifVSample>,
    summary: RlaifVSummary,
}

impl RlaifV {
    /// Reads every shard of `dir` (see [`rlaif_v_shards`]).
    ///
    /// # Errors
    /// As [`rlaif_v_shards`] and [`read_rlaif_v`].
    pub fn load(dir: impl AsRef<Path>, options: &RlaifVOptions) -> Result<Self, DataError> {
        Self::load_files(&rlaif_v_shards(dir)?, options)
    }

    /// Reads the given shards, in the given order.
    ///
    /// # Errors
    /// As [`read_rlaif_v`].
    pub fn load_files(
        files: &[impl AsRef<Path>],
        options: &RlaifVOptions,
    ) -> Result<Self, DataError> {
        let mut samples = Vec::new();
        let summary = read_rlaif_v(files, options, |s| samples.push(s))?;
        Ok(Self { samples, summary })
    }

    /// Samples and a summary read elsewhere (for instance by [`read_rlaif_v`] with a callback
    /// that moves each image out of memory).
    pub fn from_parts(samples: Vec<RlaifVSample>, summary: RlaifVSummary) -> Self {
        Self { samples, summary }
    }

    /// The kept samples.
    pub fn samples(&self) -> &[RlaifVSample] {
        &self.samples
    }

    /// The kept samples, by value.
    pub fn into_samples(self) -> Vec<RlaifVSample> {
        self.samples
    }

    /// What the read found.
    pub fn summary(&self) -> &RlaifVSummary {
        &self.summary
    }

    /// Number of kept samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was kept.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The distinct source datasets, sorted.
    pub fn sources(&self) -> Vec<&str> {
        self.summary.sources()
    }

    /// Each sample's source dataset, in sample order (the key for
    /// [`crate::partition::by_key`]).
    pub fn source_keys(&self) -> Vec<&str> {
        self.samples
            .iter()
            .map(|s| s.origin_dataset.as_str())
            .collect()
    }
}

/// Streams the usable rows of `files` (in order) to `on_sample` without keeping them, and
/// returns the summary. Each shard is read row group by row group, `ROW_BATCH` rows at a time,
/// and only the four used columns are decoded.
///
/// With [`RlaifVOptions::sample_seed`] and [`RlaifVOptions::max_samples_per_source`], each
/// source's sample is only known once every shard is read: the sampled rows (at most the cap
/// per source held in memory) are passed to `on_sample` at the end, in file order (shard, row
/// group, row), as an unsampled read passes them.
///
/// # Errors
/// [`DataError::Io`] when a file cannot be opened, [`DataError::NotParquet`] when a file is
/// truncated or not parquet, [`DataError::MissingColumn`] when a column is missing or has
/// another type, [`DataError::ParquetRead`] when a row group cannot be decoded, and, with
/// [`RlaifVOptions::strict`], [`DataError::MalformedRow`] for the first malformed row.
pub fn read_rlaif_v(
    files: &[impl AsRef<Path>],
    options: &RlaifVOptions,
    mut on_sample: impl FnMut(RlaifVSample),
) -> Result<RlaifVSummary, DataError> {
    let mut summary = RlaifVSummary::default();
    let mut keeper = Keeper::new(options);
    for (file_index, file) in files.iter().enumerate() {
        let file = file.as_ref();
        if limit_reached(&summary, options) {
            summary.stopped_early = true;
            break;
        }
        summary.files.push(file.to_path_buf());
        read_file(
            file_index,
            file,
            options,
            &mut summary,
            &mut keeper,
            &mut on_sample,
        )?;
    }
    keeper.finish(&mut on_sample);
    Ok(summary)
}

fn limit_reached(summary: &RlaifVSummary, options: &RlaifVOptions) -> bool {
    options.max_samples.is_some_and(|max| summary.kept() >= max)
}

fn read_file(
    file_index: usize,
    path: &Path,
    options: &RlaifVOptions,
    summary: &mut RlaifVSummary,
    keeper: &mut Keeper,
    on_sample: &mut impl FnMut(RlaifVSample),
) -> Result<(), DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let not_parquet = |reason: String| DataError::NotParquet {
        path: path.display().to_string(),
        reason,
    };
    // The parquet crate can panic on corrupt bytes: every call into it that reads the file
    // is checked or guarded (see `parquet_guard`), and a panic is a typed error too.
    let reader = parquet_call(|| SerializedFileReader::new(file)).map_err(not_parquet)?;
    let root = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema_ptr();
    let descr = Arc::new(SchemaDescriptor::new(Arc::new(projection(path, &root)?)));
    let source_file: Arc<Path> = Arc::from(path);
    let mut row = 0;
    for row_group in 0..reader.num_row_groups() {
        let read_error = |reason: String| DataError::ParquetRead {
            path: path.display().to_string(),
            row_group,
            reason,
        };

        if limit_reached(summary, options) {
            summary.stopped_early = true;
            return Ok(());
        }
        summary.row_groups += 1;
        check_column_chunks(reader.metadata().row_group(row_group)).map_err(read_error)?;
        let group = parquet_call(|| reader.get_row_group(row_group)).map_err(read_error)?;
        let mut rows = parquet_call(|| {
            TreeBuilder::new()
                .with_batch_size(ROW_BATCH)
                .as_iter(descr.clone(), group.as_ref())
        })
        .map_err(read_error)?;
        for row_in_group in 0.. {
            if limit_reached(summary, options) {
                summary.stopped_early = true;
                return Ok(());
            }
            let Some(record) = parquet_step(|| rows.next()).map_err(read_error)? else {
                break;
            };
            let record = record.map_err(|e| read_error(e.to_string()))?;
            summary.rows_seen += 1;
            let verdict = match fields(record) {
                Err(reason) => Err(reason),
                Ok(fields) => match keeper.admit(&fields.origin_dataset, summary) {
                    Admission::Capped => {
                        summary.capped += 1;
                        Ok(())
                    }
                    Admission::Check(_) if !image_passes(&fields.image_bytes, options) => {
                        Err(RlaifVSkip::UndecodableImage)
                    }
                    Admission::Check(ticket) => {
                        let sample = RlaifVSample {
                            question: fields.question,
                            chosen: fields.chosen,
                            origin_dataset: fields.origin_dataset,
                            image_bytes: fields.image_bytes,
                            source_file: Arc::clone(&source_file),
                            row_group,
                            row,
                        };
                        keeper.keep(ticket, file_index, sample, summary, on_sample);
                        Ok(())
                    }
                },
            };
            match verdict {
                Ok(()) => {}
                Err(reason) if options.strict => {
                    return Err(DataError::MalformedRow {
                        path: path.display().to_string(),
                        row_group,
                        row,
                        row_in_group,
                        reason,
                    });
                }
                Err(reason) => *summary.skipped.entry(reason).or_insert(0) += 1,
            }
            row += 1;
        }
    }
    Ok(())
}

/// The used values of a row whose text and image bytes are all present.
struct Fields {
    question: String,
    chosen: String,
    origin_dataset: String,
    image_bytes: Vec<u8>,
}

/// Takes one projected row (`question`, `chosen`, `origin_dataset`, `image`, in that order)
/// apart; a missing or blank value is the reason to skip the row.
fn fields(record: Row) -> Result<Fields, RlaifVSkip> {
    let mut columns = record.into_columns().into_iter().map(|(_, field)| field);
    let mut next_text = || columns.next().and_then(text);
    let (question, chosen, origin) = (next_text(), next_text(), next_text());
    let image = columns.next().and_then(image_bytes);
    match (image, question, chosen, origin) {
        (None, ..) => Err(RlaifVSkip::MissingImage),
        (_, None, ..) => Err(RlaifVSkip::EmptyQuestion),
        (_, _, None, _) => Err(RlaifVSkip::EmptyAnswer),
        (_, _, _, None) => Err(RlaifVSkip::MissingSource),
        (Some(image_bytes), Some(question), Some(chosen), Some(origin_dataset)) => Ok(Fields {
            question,
            chosen,
            origin_dataset,
            image_bytes,
        }),
    }
}

/// Whether the image bytes pass [`RlaifVOptions::image_check`].
fn image_passes(bytes: &[u8], options: &RlaifVOptions) -> bool {
    match options.image_check {
        ImageCheck::Decode => decode_image(bytes).is_ok(),
        ImageCheck::Header => image_dimensions(bytes).is_ok(),
        ImageCheck::None => true,
    }
}

/// A non-blank string value (UTF-8 string or binary column).
fn text(field: Field) -> Option<String> {
    let text = match field {
        Field::Str(s) => s,
        Field::Bytes(b) => String::from_utf8(b.data().to_vec()).ok()?,
        _ => return None,
    };
    (!text.trim().is_empty()).then_some(text)
}

/// The non-empty encoded image of an `image` value: the struct's `bytes` field, or a plain
/// binary value.
fn image_bytes(field: Field) -> Option<Vec<u8>> {
    let bytes = match field {
        Field::Bytes(b) => b,
        Field::Group(row) => row
            .into_columns()
            .into_iter()
            .find_map(|(name, f)| match f {
                Field::Bytes(b) if name == IMAGE_BYTES_FIELD => Some(b),
                _ => None,
            })?,
        _ => return None,
    };
    (!bytes.data().is_empty()).then(|| bytes.data().to_vec())
}

//! Reading OK-VQA parquet files, file by file and row group by row group.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::TreeBuilder;
use parquet::record::{Field, Row};
use parquet::schema::types::SchemaDescriptor;

use super::sample::{
    OKVQA_SOURCE, OkVqaOptions, OkVqaSample, OkVqaSkip, OkVqaSummary, majority_answer,
};
use super::schema::projection;
use crate::data::rlaif_v::{
    check_column_chunks, decode_image, image_dimensions, parquet_call, parquet_step,
};
use crate::data::{DataError, ImageCheck};

/// The split the hub dataset publishes (`val2014`, 5046 questions).
pub const OKVQA_SPLIT: &str = "val2014";
/// The file name prefix of the split's parquet files (`val2014-00000-of-00002.parquet`, ...).
pub const OKVQA_FILE_PREFIX: &str = "val2014-";
/// The file name suffix.
pub const OKVQA_FILE_SUFFIX: &str = ".parquet";
/// The file name pattern, for messages.
pub const OKVQA_FILE_PATTERN: &str = "val2014-*.parquet";
/// The sub-folder the hub repository keeps its parquet files in.
pub const OKVQA_DATA_FOLDER: &str = "data";
/// The question id column (text).
pub const OKVQA_QUESTION_ID_COLUMN: &str = "question_id";
/// The question column.
pub const OKVQA_QUESTION_COLUMN: &str = "question";
/// The human answers column: a list of strings.
pub const OKVQA_ANSWERS_COLUMN: &str = "answers";
/// The knowledge category column.
pub const OKVQA_QUESTION_TYPE_COLUMN: &str = "question_type";
/// The answer type column.
pub const OKVQA_ANSWER_TYPE_COLUMN: &str = "answer_type";
/// The image column: a struct `{bytes: binary, path: string}` as Hugging Face `datasets`
/// stores an `Image` feature (a plain binary column is accepted too).
pub const OKVQA_IMAGE_COLUMN: &str = "image";

/// The field of [`OKVQA_IMAGE_COLUMN`] holding the encoded image.
pub(super) const IMAGE_BYTES_FIELD: &str = "bytes";

/// Rows decoded at a time per column: small, since one image value is often 100 kB.
const ROW_BATCH: usize = 32;

/// Whether `name` is an OK-VQA parquet file name (`val2014-*.parquet`).
pub fn is_okvqa_file(name: &str) -> bool {
    name.len() > OKVQA_FILE_PREFIX.len() + OKVQA_FILE_SUFFIX.len()
        && name.starts_with(OKVQA_FILE_PREFIX)
        && name.ends_with(OKVQA_FILE_SUFFIX)
}

/// The OK-VQA parquet files of a local folder: those directly inside `dir`, or, when there
/// are none, those in its `data/` sub-folder (the hub repository's layout), sorted by name.
///
/// # Errors
/// [`DataError::Io`] when the folder cannot be listed, [`DataError::NoShards`] when neither
/// place holds a `val2014-*.parquet`.
pub fn okvqa_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, DataError> {
    let dir = dir.as_ref();
    let mut files = list_files(dir)?;
    let nested = dir.join(OKVQA_DATA_FOLDER);
    if files.is_empty() && nested.is_dir() {
        files = list_files(&nested)?;
    }
    if files.is_empty() {
        return Err(DataError::NoShards {
            dir: dir.display().to_string(),
            pattern: format!("{OKVQA_FILE_PATTERN} (or {OKVQA_DATA_FOLDER}/{OKVQA_FILE_PATTERN})"),
        });
    }
    Ok(files)
}

fn list_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_file()
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_okvqa_file)
        {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The OK-VQA samples kept by a read, in file and row order, with the read's summary.
#[derive(Debug, Clone, Default)]
pub struct OkVqa {
    samples: Vec<OkVqaSample>,
    summary: OkVqaSummary,
}

impl OkVqa {
    /// Reads every OK-VQA file of `dir` (see [`okvqa_files`]).
    ///
    /// # Errors
    /// As [`okvqa_files`] and [`read_okvqa`].
    pub fn load(dir: impl AsRef<Path>, options: &OkVqaOptions) -> Result<Self, DataError> {
        Self::load_files(&okvqa_files(dir)?, options)
    }

    /// Reads the given files, in the given order.
    ///
    /// # Errors
    /// As [`read_okvqa`].
    pub fn load_files(
        files: &[impl AsRef<Path>],
        options: &OkVqaOptions,
    ) -> Result<Self, DataError> {
        let mut samples = Vec::new();
        let summary = read_okvqa(files, options, |s| samples.push(s))?;
        Ok(Self { samples, summary })
    }

    /// Samples and a summary read elsewhere (for instance by [`read_okvqa`] with a callback
    /// that moves each image out of memory).
    pub fn from_parts(samples: Vec<OkVqaSample>, summary: OkVqaSummary) -> Self {
        Self { samples, summary }
    }

    /// The kept samples.
    pub fn samples(&self) -> &[OkVqaSample] {
        &self.samples
    }

    /// What the read found.
    pub fn summary(&self) -> &OkVqaSummary {
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

    /// Each sample's client key, in sample order: [`OKVQA_SOURCE`] for all (the key for
    /// [`crate::data::partition_by_source_keys`], whose IID scheme is the one that splits a
    /// single source).
    pub fn source_keys(&self) -> Vec<&str> {
        vec![OKVQA_SOURCE; self.samples.len()]
    }
}

/// Streams the usable rows of `files` (in order) to `on_sample` and returns the summary. Each
/// file is read row group by row group, `ROW_BATCH` rows at a time; only the columns used
/// are decoded.
///
/// # Errors
/// [`DataError::Io`] when a file cannot be opened, [`DataError::NotParquet`] when a file is
/// truncated or not parquet, [`DataError::MissingColumn`] when `question`, `answers` or
/// `image` is missing or has another type, [`DataError::ParquetRead`] when a row group cannot
/// be decoded, and, with [`OkVqaOptions::strict`], [`DataError::MalformedOkVqaRow`] for the
/// first malformed row.
pub fn read_okvqa(
    files: &[impl AsRef<Path>],
    options: &OkVqaOptions,
    mut on_sample: impl FnMut(OkVqaSample),
) -> Result<OkVqaSummary, DataError> {
    let mut summary = OkVqaSummary::default();
    for file in files {
        if limit_reached(&summary, options) {
            summary.stopped_early = true;
            break;
        }
        let file = file.as_ref();
        summary.files.push(file.to_path_buf());
        read_file(file, options, &mut summary, &mut on_sample)?;
    }
    Ok(summary)
}

fn limit_reached(summary: &OkVqaSummary, options: &OkVqaOptions) -> bool {
    options.max_samples.is_some_and(|max| summary.kept >= max)
}

fn read_file(
    path: &Path,
    options: &OkVqaOptions,
    summary: &mut OkVqaSummary,
    on_sample: &mut impl FnMut(OkVqaSample),
) -> Result<(), DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let not_parquet = |reason: String| DataError::NotParquet {
        path: path.display().to_string(),
        reason,
    };
    // The parquet crate can panic on corrupt bytes: every call into it that reads the file is
    // checked or guarded, as in the RLAIF-V reader.
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
            let verdict = fields(record, options).and_then(|fields| {
                if image_passes(&fields.image_bytes, options.image_check) {
                    Ok(fields)
                } else {
                    Err(OkVqaSkip::UndecodableImage)
                }
            });
            match verdict {
                Ok(fields) => {
                    summary.kept += 1;
                    on_sample(fields.into_sample(Arc::clone(&source_file), row_group, row));
                }
                Err(reason) if options.strict => {
                    return Err(DataError::MalformedOkVqaRow {
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

/// The used values of a well-formed row.
struct Fields {
    question_id: String,
    question: String,
    answers: Vec<String>,
    answer: String,
    question_type: Option<String>,
    answer_type: Option<String>,
    image_bytes: Vec<u8>,
}

impl Fields {
    fn into_sample(self, source_file: Arc<Path>, row_group: usize, row: usize) -> OkVqaSample {
        OkVqaSample {
            question_id: self.question_id,
            question: self.question,
            answers: self.answers,
            answer: self.answer,
            question_type: self.question_type,
            answer_type: self.answer_type,
            image_bytes: self.image_bytes,
            source_file,
            row_group,
            row,
        }
    }
}

/// Takes one projected row apart by column name; the first missing or malformed value (image,
/// then question, then answers) is the reason to skip the row.
fn fields(record: Row, options: &OkVqaOptions) -> Result<Fields, OkVqaSkip> {
    let (mut question_id, mut question, mut answers, mut image) = (None, None, None, None);
    let (mut question_type, mut answer_type) = (None, None);
    for (name, field) in record.into_columns() {
        match name.as_str() {
            OKVQA_QUESTION_ID_COLUMN => question_id = id_text(field),
            OKVQA_QUESTION_COLUMN => question = text(field),
            OKVQA_ANSWERS_COLUMN => answers = Some(field),
            OKVQA_IMAGE_COLUMN => image = image_bytes(field),
            OKVQA_QUESTION_TYPE_COLUMN => question_type = text(field),
            OKVQA_ANSWER_TYPE_COLUMN => answer_type = text(field),
            _ => {}
        }
    }
    let image_bytes = image.ok_or(OkVqaSkip::MissingImage)?;
    let question = question.ok_or(OkVqaSkip::EmptyQuestion)?;
    let answers = human_answers(answers, options.answers_per_question)?;
    let answer = majority_answer(&answers)
        .ok_or(OkVqaSkip::BlankAnswer)?
        .to_string();
    Ok(Fields {
        question_id: question_id.unwrap_or_default(),
        question,
        answers,
        answer,
        question_type,
        answer_type,
        image_bytes,
    })
}

/// The list of human answers: non-empty, of the expected length, every answer non-blank.
fn human_answers(field: Option<Field>, expected: Option<usize>) -> Result<Vec<String>, OkVqaSkip> {
    let list = match field {
        Some(Field::ListInternal(list)) => list,
        _ => return Err(OkVqaSkip::NoAnswers),
    };
    let elements = list.elements();
    if elements.is_empty() {
        return Err(OkVqaSkip::NoAnswers);
    }
    if expected.is_some_and(|n| n != elements.len()) {
        return Err(OkVqaSkip::WrongAnswerCount);
    }
    elements
        .iter()
        .map(|f| text(f.clone()).ok_or(OkVqaSkip::BlankAnswer))
        .collect()
}

/// Whether the image bytes pass `check`.
fn image_passes(bytes: &[u8], check: ImageCheck) -> bool {
    match check {
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

/// A question id: text, or an integer written as text (other releases store it as int64).
fn id_text(field: Field) -> Option<String> {
    match field {
        Field::Int(v) => Some(v.to_string()),
        Field::Long(v) => Some(v.to_string()),
        Field::UInt(v) => Some(v.to_string()),
        Field::ULong(v) => Some(v.to_string()),
        other => text(other),
    }
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

/// Partitions OK-VQA into clients (the IID scheme: OK-VQA has one source, so by-source
/// schemes give one client) and splits each into train and test, as
/// [`partition_rlaif_v`](crate::data::partition_rlaif_v) does RLAIF-V.
///
/// # Errors
/// As [`partition_by_source_keys`](crate::data::partition_by_source_keys).
pub fn partition_okvqa(
    data: &OkVqa,
    options: &crate::data::RlaifVPartitionOptions,
) -> crate::Result<Vec<crate::data::RlaifVClient>> {
    crate::data::partition_by_source_keys(&data.source_keys(), options)
}

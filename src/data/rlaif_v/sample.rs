//! The RLAIF-V sample, the reader's options and its summary.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{DynamicImage, ImageReader};

use crate::data::DataError;

/// One usable RLAIF-V row: the question, the preferred ("chosen") answer, the source dataset
/// and the encoded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlaifVSample {
    /// The question (Florence-2's VQA prompt is the plain question).
    pub question: String,
    /// The preferred answer (the training target).
    pub chosen: String,
    /// The source dataset the row came from (`origin_dataset`), the natural client key.
    pub origin_dataset: String,
    /// The encoded image (JPEG or PNG bytes, as stored in the shard); see
    /// [`Self::decode_image`].
    pub image_bytes: Vec<u8>,
    /// The shard the row was read from.
    pub source_file: Arc<Path>,
    /// The row group within [`Self::source_file`] (0-based).
    pub row_group: usize,
    /// The row's index within [`Self::source_file`] (0-based, counting every row, malformed
    /// ones included).
    pub row: usize,
}

impl RlaifVSample {
    /// Decodes [`Self::image_bytes`] (format guessed from the content: JPEG or PNG).
    ///
    /// # Errors
    /// [`DataError::Malformed`] naming the shard and row when the bytes are not a decodable
    /// image.
    pub fn decode_image(&self) -> Result<DynamicImage, DataError> {
        decode_image(&self.image_bytes).map_err(|reason| {
            DataError::malformed(
                &self.source_file,
                format!("row {}: undecodable image: {reason}", self.row),
            )
        })
    }
}

/// Decodes encoded image bytes, guessing the format from the content.
pub(crate) fn decode_image(bytes: &[u8]) -> Result<DynamicImage, String> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| e.to_string())
}

/// Reads only the image header: format and dimensions.
pub(crate) fn image_dimensions(bytes: &[u8]) -> Result<(u32, u32), String> {
    ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .into_dimensions()
        .map_err(|e| e.to_string())
}

/// Why a row was skipped (or, in strict mode, rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RlaifVSkip {
    /// The `image` value, or its `bytes` field, is null or empty.
    MissingImage,
    /// The image bytes are not a decodable JPEG or PNG (per [`ImageCheck`]).
    UndecodableImage,
    /// The question is null or blank.
    EmptyQuestion,
    /// The chosen answer is null or blank.
    EmptyAnswer,
    /// `origin_dataset` is null or blank, so the row has no client key.
    MissingSource,
}

impl RlaifVSkip {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 5] = [
        Self::MissingImage,
        Self::UndecodableImage,
        Self::EmptyQuestion,
        Self::EmptyAnswer,
        Self::MissingSource,
    ];

    /// A short snake-case name (`missing_image`, ...), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingImage => "missing_image",
            Self::UndecodableImage => "undecodable_image",
            Self::EmptyQuestion => "empty_question",
            Self::EmptyAnswer => "empty_answer",
            Self::MissingSource => "missing_source",
        }
    }
}

impl fmt::Display for RlaifVSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingImage => "missing image bytes",
            Self::UndecodableImage => "undecodable image",
            Self::EmptyQuestion => "empty question",
            Self::EmptyAnswer => "empty chosen answer",
            Self::MissingSource => "empty origin_dataset",
        })
    }
}

/// How thoroughly the reader checks each kept row's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageCheck {
    /// Decode the whole image (catches truncated JPEGs; the slowest).
    #[default]
    Decode,
    /// Read the header only (format and size): fast, catches non-images but not truncated
    /// pixel data.
    Header,
    /// No check beyond the bytes being present.
    None,
}

/// Options of the RLAIF-V reader.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RlaifVOptions {
    /// Abort on the first malformed row with [`DataError::MalformedRow`] instead of skipping
    /// and counting it.
    pub strict: bool,
    /// Stop once this many samples are kept (shards are read in order, so a small value reads
    /// only the first row groups). A read limit whether or not [`Self::sample_seed`] is set:
    /// with a seed it stops once this many rows are held in the per-source samples, and the
    /// samples are then drawn from the rows read so far only.
    pub max_samples: Option<usize>,
    /// Keep at most this many samples per source dataset: the first ones in file order, or,
    /// with [`Self::sample_seed`], a uniform random sample of the source's well-formed rows.
    /// Rows left out are counted in [`RlaifVSummary::capped`] (their images are not checked).
    /// Every shard is still read, since a source may appear anywhere.
    pub max_samples_per_source: Option<usize>,
    /// How to check images.
    pub image_check: ImageCheck,
    /// With [`Self::max_samples_per_source`], keep a seeded uniform random sample of each
    /// source's well-formed rows instead of its first rows (`None`, the default).
    ///
    /// Each source has its own reservoir (bounded memory, at most the cap per source) whose
    /// random stream is seeded from this seed and the source's name, so a source's sample
    /// depends only on the seed and that source's rows, not on the other sources. Rows
    /// missing their text or image bytes are skipped as always; an image is checked (per
    /// [`Self::image_check`]) only when the row would enter its source's sample, and a row
    /// whose image fails the check is skipped and takes no part in the draw, so the sample is
    /// uniform over the rows that pass. The same seed and shards give the same samples; the
    /// kept samples still come out in file order (shard, row group, row), handed to
    /// [`read_rlaif_v`](crate::data::read_rlaif_v)'s callback at the end of the read.
    /// Without a per-source cap the seed has no effect.
    pub sample_seed: Option<u64>,
}

impl RlaifVOptions {
    /// Skips and counts malformed rows, no limits, full image decoding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`Self::strict`].
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Sets [`Self::max_samples`].
    pub fn max_samples(mut self, max: usize) -> Self {
        self.max_samples = Some(max);
        self
    }

    /// Sets [`Self::max_samples_per_source`].
    pub fn max_samples_per_source(mut self, max: usize) -> Self {
        self.max_samples_per_source = Some(max);
        self
    }

    /// Sets [`Self::image_check`].
    pub fn image_check(mut self, check: ImageCheck) -> Self {
        self.image_check = check;
        self
    }

    /// Sets [`Self::sample_seed`]: a seeded uniform random sample per source instead of the
    /// first rows.
    pub fn sample_seed(mut self, seed: u64) -> Self {
        self.sample_seed = Some(seed);
        self
    }
}

/// What a read found: rows kept per source, rows skipped per reason, rows left out by limits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RlaifVSummary {
    /// The shards read, in order.
    pub files: Vec<PathBuf>,
    /// Row groups read (in full or in part).
    pub row_groups: usize,
    /// Rows looked at; every one is kept, skipped or capped, so after a read `rows_seen ==
    /// kept() + skipped_total() + capped`.
    pub rows_seen: usize,
    /// Samples kept per source dataset (the distinct `origin_dataset` values found; during a
    /// sampled read, the rows held in each source's sample so far).
    pub kept_per_source: BTreeMap<String, usize>,
    /// Malformed rows skipped, per reason (reasons with none are absent).
    pub skipped: BTreeMap<RlaifVSkip, usize>,
    /// Well-formed-looking rows (text and image bytes present) left out by
    /// [`RlaifVOptions::max_samples_per_source`] because their source's sample was full: rows
    /// after the first ones without [`RlaifVOptions::sample_seed`], rows not drawn into the
    /// random sample (or drawn and later replaced by a row drawn ahead of them) with it. Their
    /// images are not checked unless they were drawn, so an undecodable image left out by
    /// the cap counts here, not in [`Self::skipped`].
    pub capped: usize,
    /// Whether [`RlaifVOptions::max_samples`] stopped the read before the end.
    pub stopped_early: bool,
}

impl RlaifVSummary {
    /// Samples kept in all.
    pub fn kept(&self) -> usize {
        self.kept_per_source.values().sum()
    }

    /// Malformed rows skipped in all.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Malformed rows skipped for `reason`.
    pub fn skipped_for(&self, reason: RlaifVSkip) -> usize {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    /// The distinct source datasets of the kept samples, sorted.
    pub fn sources(&self) -> Vec<&str> {
        self.kept_per_source.keys().map(String::as_str).collect()
    }
}

impl fmt::Display for RlaifVSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples from {} sources ({} shards, {} row groups, {} rows)",
            self.kept(),
            self.kept_per_source.len(),
            self.files.len(),
            self.row_groups,
            self.rows_seen
        )?;
        for (source, n) in &self.kept_per_source {
            write!(f, "\n  {source}: {n}")?;
        }
        if !self.skipped.is_empty() {
            write!(f, "\n  skipped:")?;
            for (reason, n) in &self.skipped {
                write!(f, " {}={n}", reason.name())?;
            }
        }
        if self.capped > 0 {
            write!(f, "\n  over the per-source cap: {}", self.capped)?;
        }
        if self.stopped_early {
            write!(f, "\n  stopped at max_samples")?;
        }
        Ok(())
    }
}

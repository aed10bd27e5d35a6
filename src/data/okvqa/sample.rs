//! The OK-VQA sample, the training target rule, the reader's options and its summary.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::DynamicImage;

use crate::data::DataError;
use crate::data::ImageCheck;
use crate::data::rlaif_v::decode_image;

/// Human answers per OK-VQA question (the VQA protocol collects ten).
pub const OKVQA_ANSWERS_PER_QUESTION: usize = 10;

/// The client key every OK-VQA sample carries: the dataset has one source, so its clients
/// are IID shares.
pub const OKVQA_SOURCE: &str = "ok-vqa";

/// One usable OK-VQA row: the question, its ten human answers, the training target drawn from
/// them, and the encoded image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkVqaSample {
    /// The question id (`question_id`, kept as text).
    pub question_id: String,
    /// The question.
    pub question: String,
    /// The human answers, in the file's order (ten in the published data).
    pub answers: Vec<String>,
    /// The training target: [`majority_answer`] of [`Self::answers`].
    pub answer: String,
    /// The question's knowledge category (`question_type`), when the file has it.
    pub question_type: Option<String>,
    /// The answer type (`answer_type`), when the file has it.
    pub answer_type: Option<String>,
    /// The encoded image (JPEG or PNG bytes, as stored in the file).
    pub image_bytes: Vec<u8>,
    /// The file the row was read from.
    pub source_file: Arc<Path>,
    /// The row group within [`Self::source_file`] (0-based).
    pub row_group: usize,
    /// The row's index within [`Self::source_file`] (0-based, counting every row, malformed
    /// ones included).
    pub row: usize,
}

impl OkVqaSample {
    /// Decodes [`Self::image_bytes`] (format guessed from the content: JPEG or PNG).
    ///
    /// # Errors
    /// [`DataError::Malformed`] naming the file and row when the bytes are not a decodable
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

/// The training target of a question: its most common human answer.
///
/// Answers are compared after trimming surrounding whitespace, and otherwise exactly (the
/// published answers are already lower-case; no further VQA normalisation is applied). A tie
/// goes to the tied answer that appears first in `answers`, so the rule is deterministic and
/// independent of any hashing. `None` when `answers` holds no non-blank answer.
pub fn majority_answer(answers: &[String]) -> Option<&str> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for answer in answers.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
        match counts.iter_mut().find(|(seen, _)| *seen == answer) {
            Some((_, n)) => *n += 1,
            None => counts.push((answer, 1)),
        }
    }
    // `counts` is in first-appearance order; keep the first of the largest.
    let mut best: Option<(&str, usize)> = None;
    for (answer, n) in counts {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((answer, n));
        }
    }
    best.map(|(answer, _)| answer)
}

/// Why an OK-VQA row was skipped (or, in strict mode, rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OkVqaSkip {
    /// The `image` value, or its `bytes` field, is null or empty.
    MissingImage,
    /// The image bytes are not a decodable JPEG or PNG (per [`ImageCheck`]).
    UndecodableImage,
    /// The question is null or blank.
    EmptyQuestion,
    /// `answers` is null or an empty list.
    NoAnswers,
    /// `answers` holds another number of answers than [`OkVqaOptions::answers_per_question`].
    WrongAnswerCount,
    /// One of the answers is null or blank.
    BlankAnswer,
}

impl OkVqaSkip {
    /// Every reason, in a fixed order.
    pub const ALL: [Self; 6] = [
        Self::MissingImage,
        Self::UndecodableImage,
        Self::EmptyQuestion,
        Self::NoAnswers,
        Self::WrongAnswerCount,
        Self::BlankAnswer,
    ];

    /// A short snake-case name (`missing_image`, ...), for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::MissingImage => "missing_image",
            Self::UndecodableImage => "undecodable_image",
            Self::EmptyQuestion => "empty_question",
            Self::NoAnswers => "no_answers",
            Self::WrongAnswerCount => "wrong_answer_count",
            Self::BlankAnswer => "blank_answer",
        }
    }
}

impl fmt::Display for OkVqaSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingImage => "missing image bytes",
            Self::UndecodableImage => "undecodable image",
            Self::EmptyQuestion => "empty question",
            Self::NoAnswers => "no human answers",
            Self::WrongAnswerCount => "wrong number of human answers",
            Self::BlankAnswer => "a blank human answer",
        })
    }
}

/// Options of the OK-VQA reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OkVqaOptions {
    /// Abort on the first malformed row with [`DataError::MalformedOkVqaRow`] instead of
    /// skipping and counting it.
    pub strict: bool,
    /// Stop once this many samples are kept (files are read in order, so a small value reads
    /// only the first row groups).
    pub max_samples: Option<usize>,
    /// How to check images.
    pub image_check: ImageCheck,
    /// The number of human answers a row must hold
    /// ([`OKVQA_ANSWERS_PER_QUESTION`] by default); `None` accepts any non-empty list.
    pub answers_per_question: Option<usize>,
}

impl Default for OkVqaOptions {
    fn default() -> Self {
        Self {
            strict: false,
            max_samples: None,
            image_check: ImageCheck::Decode,
            answers_per_question: Some(OKVQA_ANSWERS_PER_QUESTION),
        }
    }
}

impl OkVqaOptions {
    /// Skips and counts malformed rows, no limit, full image decoding, ten answers a row.
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

    /// Sets [`Self::image_check`].
    pub fn image_check(mut self, check: ImageCheck) -> Self {
        self.image_check = check;
        self
    }

    /// Sets [`Self::answers_per_question`].
    pub fn answers_per_question(mut self, count: Option<usize>) -> Self {
        self.answers_per_question = count;
        self
    }
}

/// What a read found: rows kept, rows skipped per reason.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OkVqaSummary {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Row groups read (in full or in part).
    pub row_groups: usize,
    /// Rows looked at; every one is kept or skipped, so after a read
    /// `rows_seen == kept + skipped_total()`.
    pub rows_seen: usize,
    /// Samples kept.
    pub kept: usize,
    /// Malformed rows skipped, per reason (reasons with none are absent).
    pub skipped: BTreeMap<OkVqaSkip, usize>,
    /// Whether [`OkVqaOptions::max_samples`] stopped the read before the end.
    pub stopped_early: bool,
}

impl OkVqaSummary {
    /// Malformed rows skipped in all.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Malformed rows skipped for `reason`.
    pub fn skipped_for(&self, reason: OkVqaSkip) -> usize {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }
}

impl fmt::Display for OkVqaSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OK-VQA: {} samples ({} files, {} row groups, {} rows)",
            self.kept,
            self.files.len(),
            self.row_groups,
            self.rows_seen
        )?;
        if !self.skipped.is_empty() {
            write!(f, "\n  skipped:")?;
            for (reason, n) in &self.skipped {
                write!(f, " {}={n}", reason.name())?;
            }
        }
        if self.stopped_early {
            write!(f, "\n  stopped at max_samples")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::majority_answer;

    fn answers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_most_common_answer_wins_and_ties_go_to_the_first_seen() {
        let a = answers(&["dog", "cat", "cat", "dog", "cat", "fox"]);
        assert_eq!(majority_answer(&a), Some("cat"));
        // 2 x "tennis", 2 x "racket": "racket" appears first.
        let a = answers(&["racket", "tennis", "tennis", "racket", "ball"]);
        assert_eq!(majority_answer(&a), Some("racket"));
        let a = answers(&["tennis", "racket", "tennis", "racket", "ball"]);
        assert_eq!(majority_answer(&a), Some("tennis"));
        // Whitespace around an answer does not make it another answer; blanks never count.
        let a = answers(&[" ", "oak ", "pine", " oak", "", "pine", "pine"]);
        assert_eq!(majority_answer(&a), Some("pine"));
        let a = answers(&["oak ", " oak", "pine"]);
        assert_eq!(majority_answer(&a), Some("oak"));
        assert_eq!(majority_answer(&answers(&["", "  "])), None);
        assert_eq!(majority_answer(&[]), None);
    }
}

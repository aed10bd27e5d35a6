//! Rows moved out of memory as they are read: each row's encoded image and text (question,
//! answer, human answers) go to an [`ImageStore`] file, and memory keeps a fixed 32 bytes a
//! row (where its image and text are, and its source). Reading a dataset this way costs
//! memory for the read's own buffers only, whatever its row count; the text of a row is read
//! back when [`RlaifData::prepare`](super::RlaifData::prepare) tokenises it; test samples
//! keep where it is ([`SampleTexts`](super::SampleTexts)) and read it back when scored.

use std::borrow::Cow;
use std::sync::Arc;

use super::rows::{VqaDataset, VqaRow};
use super::source_names::SourceNames;
use crate::error::{FedError, Result};
use crate::experiments::vqa::{EncodedBytes, ImageStore};

/// Where one row's image and text are in the store, and its source (an index into
/// [`SpilledRows`]'s source names).
#[derive(Debug, Clone, Copy)]
struct Spilled {
    image_offset: u64,
    text_offset: u64,
    image_len: u32,
    text_len: u32,
    source: u32,
}

/// The text of a spilled row, read back from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpilledText {
    /// The question.
    pub question: String,
    /// The training target (RLAIF-V's chosen answer, OK-VQA's majority answer).
    pub answer: String,
    /// The human answers (OK-VQA's ten; empty for RLAIF-V).
    pub human_answers: Vec<String>,
}

/// Rows of one dataset whose images and text wait in a file (see the module docs), in the
/// order they were pushed.
#[derive(Debug)]
pub struct SpilledRows {
    dataset: VqaDataset,
    store: Arc<ImageStore>,
    sources: SourceNames,
    rows: Vec<Spilled>,
}

impl SpilledRows {
    /// No rows yet; pushed rows go to `store`.
    pub fn new(dataset: VqaDataset, store: Arc<ImageStore>) -> Self {
        Self {
            dataset,
            store,
            sources: SourceNames::default(),
            rows: Vec::new(),
        }
    }

    /// Appends `row`'s encoded image and text to the store and remembers where they are.
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be written, [`FedError::Task`] for an image or
    /// a text over 4 GiB or more than 2^32 sources.
    pub fn push(&mut self, row: VqaRow<'_>) -> Result<()> {
        let image = self.store.append(row.image_bytes())?;
        let text = self.store.append(&encode_text(row))?;
        let source = self.sources.id(row.source())?;
        let (image_offset, image_len) = place(&image)?;
        let (text_offset, text_len) = place(&text)?;
        self.rows.push(Spilled {
            image_offset,
            text_offset,
            image_len,
            text_len,
            source,
        });
        Ok(())
    }

    /// The dataset the rows come from.
    pub fn dataset(&self) -> VqaDataset {
        self.dataset
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Each row's client key (its source), in row order.
    pub fn source_keys(&self) -> Vec<&str> {
        self.rows
            .iter()
            .map(|r| self.sources.name(r.source))
            .collect()
    }

    /// Row `index`'s source, `None` past the end.
    pub fn source(&self, index: usize) -> Option<&str> {
        self.rows.get(index).map(|r| self.sources.name(r.source))
    }

    /// Where row `index`'s encoded image is, `None` past the end.
    pub fn image(&self, index: usize) -> Option<EncodedBytes> {
        self.rows.get(index).map(|r| EncodedBytes::Stored {
            store: Arc::clone(&self.store),
            offset: r.image_offset,
            len: r.image_len as usize,
        })
    }

    /// Where row `index`'s text record is in the store, `None` past the end.
    pub(super) fn text_at(&self, index: usize) -> Option<EncodedBytes> {
        self.rows.get(index).map(|r| EncodedBytes::Stored {
            store: Arc::clone(&self.store),
            offset: r.text_offset,
            len: r.text_len as usize,
        })
    }

    /// Row `index`'s text, read back from the store; `Ok(None)` past the end.
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be read, [`FedError::Task`] when what it
    /// holds there is not a text record.
    pub fn text(&self, index: usize) -> Result<Option<SpilledText>> {
        let Some(stored) = self.text_at(index) else {
            return Ok(None);
        };
        decode_text(&stored.bytes()?).map(Some).ok_or_else(|| {
            FedError::Task(format!(
                "row {index}'s text in {} is damaged",
                self.store.path().display()
            ))
        })
    }
}

/// Offset and length of a stored value, the length as `u32`.
fn place(stored: &EncodedBytes) -> Result<(u64, u32)> {
    match stored {
        EncodedBytes::Stored { offset, len, .. } => u32::try_from(*len)
            .map(|len| (*offset, len))
            .map_err(|_| FedError::Task(format!("a row's value of {len} bytes is over 4 GiB"))),
        EncodedBytes::Memory(_) => Err(FedError::Task("a store kept a value in memory".into())),
    }
}

/// A row's text as length-prefixed strings: question, answer, the number of human answers,
/// each human answer (lengths and the count as little-endian `u32`).
fn encode_text(row: VqaRow<'_>) -> Vec<u8> {
    encode_parts(row.question(), row.answer(), row.human_answers())
}

/// [`encode_text`] from the parts.
pub(super) fn encode_parts(question: &str, answer: &str, human: &[String]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = Vec::new();
    put(&mut out, question);
    put(&mut out, answer);
    out.extend_from_slice(&(human.len() as u32).to_le_bytes());
    for s in human {
        put(&mut out, s);
    }
    out
}

/// The next little-endian `u32` of `rest`, as a length.
fn take_len(rest: &mut &[u8]) -> Option<usize> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(u32::from_le_bytes(*head) as usize)
}

/// The next length-prefixed string of `rest`.
fn take_string(rest: &mut &[u8]) -> Option<String> {
    let len = take_len(rest)?;
    let (text, tail) = (rest.get(..len)?, rest.get(len..)?);
    *rest = tail;
    String::from_utf8(text.to_vec()).ok()
}

/// The inverse of [`encode_text`]; `None` for bytes it did not write.
pub(super) fn decode_text(bytes: &[u8]) -> Option<SpilledText> {
    let mut rest = bytes;
    let question = take_string(&mut rest)?;
    let answer = take_string(&mut rest)?;
    let count = take_len(&mut rest)?;
    let mut human_answers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        human_answers.push(take_string(&mut rest)?);
    }
    rest.is_empty().then_some(SpilledText {
        question,
        answer,
        human_answers,
    })
}

/// A row's text, borrowed from an in-memory row or read back from spilled rows.
#[derive(Debug, Clone)]
pub(super) struct RowText<'a> {
    pub(super) question: Cow<'a, str>,
    pub(super) answer: Cow<'a, str>,
    pub(super) human_answers: Cow<'a, [String]>,
}

impl<'a> From<VqaRow<'a>> for RowText<'a> {
    fn from(row: VqaRow<'a>) -> Self {
        Self {
            question: Cow::Borrowed(row.question()),
            answer: Cow::Borrowed(row.answer()),
            human_answers: Cow::Borrowed(row.human_answers()),
        }
    }
}

impl From<SpilledText> for RowText<'_> {
    fn from(text: SpilledText) -> Self {
        Self {
            question: Cow::Owned(text.question),
            answer: Cow::Owned(text.answer),
            human_answers: Cow::Owned(text.human_answers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{OkVqaSample, RlaifVSample};
    use std::path::Path;

    fn rlaif(question: &str, chosen: &str, source: &str, image: &[u8]) -> RlaifVSample {
        RlaifVSample {
            question: question.into(),
            chosen: chosen.into(),
            origin_dataset: source.into(),
            image_bytes: image.to_vec(),
            source_file: Arc::from(Path::new("x.parquet")),
            row_group: 0,
            row: 0,
        }
    }

    #[test]
    fn rows_come_back_as_they_were_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::temporary(dir.path()).unwrap());
        let mut rows = SpilledRows::new(VqaDataset::RlaifV, Arc::clone(&store));
        let samples = [
            rlaif("what is é?", "a long answer", "alpha", b"\xff\xd8one"),
            rlaif("q2", "", "beta", b""),
            rlaif("q3", "c", "alpha", b"three"),
        ];
        for s in &samples {
            rows.push(VqaRow::RlaifV(s)).unwrap();
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.source_keys(), ["alpha", "beta", "alpha"]);
        assert_eq!(rows.source(1), Some("beta"));
        assert_eq!(rows.source(3), None);
        for (i, s) in samples.iter().enumerate() {
            let text = rows.text(i).unwrap().unwrap();
            assert_eq!(
                (text.question.as_str(), text.answer.as_str()),
                (&*s.question, &*s.chosen)
            );
            assert!(text.human_answers.is_empty());
            assert_eq!(
                &*rows.image(i).unwrap().bytes().unwrap(),
                &s.image_bytes[..]
            );
        }
        assert!(rows.text(3).unwrap().is_none() && rows.image(3).is_none());

        let ok = OkVqaSample {
            question_id: "1".into(),
            question: "why?".into(),
            answers: vec!["a".into(), "".into(), "ç".into()],
            answer: "a".into(),
            question_type: None,
            answer_type: None,
            image_bytes: b"img".to_vec(),
            source_file: Arc::from(Path::new("v.parquet")),
            row_group: 0,
            row: 0,
        };
        let mut ok_rows = SpilledRows::new(VqaDataset::OkVqa, store);
        ok_rows.push(VqaRow::OkVqa(&ok)).unwrap();
        let text = ok_rows.text(0).unwrap().unwrap();
        assert_eq!(text.human_answers, ok.answers);
        assert_eq!(ok_rows.source_keys(), [crate::data::OKVQA_SOURCE]);
    }

    #[test]
    fn damaged_records_are_refused() {
        assert!(decode_text(&[1, 0, 0]).is_none());
        assert!(decode_text(&[5, 0, 0, 0, b'a']).is_none());
        let row = rlaif("q", "a", "s", b"");
        let mut bytes = encode_text(VqaRow::RlaifV(&row));
        assert!(decode_text(&bytes).is_some());
        bytes.push(0);
        assert!(decode_text(&bytes).is_none());
    }
}

//! The samples' text: each sample's source, and for the samples answers are generated for
//! (the test samples) the question, the reference answer and the human answers.
//!
//! Memory keeps a source index per sample; a test sample's text stays where the rows put it
//! (in the rows' store file, see [`SpilledRows`](super::SpilledRows), or in memory for rows
//! read into memory) and is read back when its answers are scored.

use std::collections::HashMap;
use std::sync::Arc;

use super::source_names::SourceNames;
use super::spill::{SpilledText, decode_text};
use crate::error::{FedError, Result};
use crate::experiments::vqa::EncodedBytes;

/// The question and reference answer of one sample, as text (for the generated-answers file
/// and the answer-level scores). Only test samples (the ones answers are generated for) have
/// their question, answer and human answers; a training-only sample has its source and
/// empty text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleText {
    /// The question.
    pub question: String,
    /// The chosen (reference) answer.
    pub answer: String,
    /// Its source dataset (`origin_dataset`; OK-VQA: [`crate::data::OKVQA_SOURCE`]).
    pub source: String,
    /// The human answers the VQA accuracy is computed against (OK-VQA's ten); empty when the
    /// data set has none (RLAIF-V).
    pub human_answers: Vec<String>,
}

/// Where a test sample's text is.
#[derive(Debug, Clone)]
pub(super) enum TextAt {
    /// In memory.
    Memory(Arc<SpilledText>),
    /// A text record of [`SpilledRows`](super::SpilledRows) in its store.
    Stored(EncodedBytes),
}

impl TextAt {
    fn read(&self) -> Result<SpilledText> {
        match self {
            Self::Memory(text) => Ok((**text).clone()),
            Self::Stored(bytes) => decode_text(&bytes.bytes()?)
                .ok_or_else(|| FedError::Task("a sample's stored text is damaged".into())),
        }
    }
}

/// Every sample's [`SampleText`], in sample order (see the module docs for what memory
/// holds).
#[derive(Debug, Clone, Default)]
pub struct SampleTexts {
    sources: SourceNames,
    source_of: Vec<u32>,
    texts: HashMap<usize, TextAt>,
}

impl SampleTexts {
    /// Appends a sample from `source`, with its text when it has one.
    pub(super) fn push(&mut self, source: &str, text: Option<TextAt>) -> Result<()> {
        let id = self.sources.id(source)?;
        if let Some(text) = text {
            self.texts.insert(self.source_of.len(), text);
        }
        self.source_of.push(id);
        Ok(())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.source_of.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.source_of.is_empty()
    }

    /// Sample `i`'s source, `None` past the end.
    pub fn source(&self, i: usize) -> Option<&str> {
        self.source_of.get(i).map(|&id| self.sources.name(id))
    }

    /// Sample `i`'s text (read back from the store when stored; empty question and answers
    /// for a sample without text).
    ///
    /// # Errors
    /// [`FedError::Task`] past the end or for a damaged record, [`FedError::Io`] when the
    /// store cannot be read.
    pub fn get(&self, i: usize) -> Result<SampleText> {
        let source = self
            .source(i)
            .ok_or_else(|| FedError::Task(format!("sample {i} is past the {}", self.len())))?
            .to_string();
        let text = match self.texts.get(&i) {
            Some(at) => at.read()?,
            None => SpilledText {
                question: String::new(),
                answer: String::new(),
                human_answers: Vec::new(),
            },
        };
        Ok(SampleText {
            question: text.question,
            answer: text.answer,
            source,
            human_answers: text.human_answers,
        })
    }

    /// Replaces sample `i`'s question and answers with `text`'s (held in memory from then
    /// on); its source stays.
    ///
    /// # Errors
    /// [`FedError::Task`] past the end.
    pub fn set(&mut self, i: usize, text: SampleText) -> Result<()> {
        if i >= self.len() {
            return Err(FedError::Task(format!(
                "sample {i} is past the {}",
                self.len()
            )));
        }
        let text = SpilledText {
            question: text.question,
            answer: text.answer,
            human_answers: text.human_answers,
        };
        self.texts.insert(i, TextAt::Memory(Arc::new(text)));
        Ok(())
    }

    /// Every sample's text, in order (see [`SampleTexts::get`]).
    pub fn iter(&self) -> impl Iterator<Item = Result<SampleText>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl PartialEq for SampleTexts {
    /// The same text for every sample (wherever it is held); unreadable text compares
    /// unequal.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (0..self.len()).all(|i| match (self.get(i), other.get(i)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::vqa::ImageStore;

    fn text(q: &str, a: &str, human: &[&str]) -> SpilledText {
        SpilledText {
            question: q.into(),
            answer: a.into(),
            human_answers: human.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn texts_come_back_from_memory_and_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ImageStore::temporary(dir.path()).unwrap());
        let stored_text = text("why é?", "because", &["a", "b"]);
        let record = super::super::spill::encode_parts(
            &stored_text.question,
            &stored_text.answer,
            &stored_text.human_answers,
        );
        let at = store.append(&record).unwrap();

        let mut texts = SampleTexts::default();
        texts.push("alpha", None).unwrap();
        texts.push("beta", Some(TextAt::Stored(at))).unwrap();
        let memory = text("q", "a", &[]);
        texts
            .push("alpha", Some(TextAt::Memory(Arc::new(memory))))
            .unwrap();
        assert_eq!(texts.len(), 3);
        assert_eq!(texts.source(2), Some("alpha"));
        assert_eq!(texts.source(3), None);

        let first = texts.get(0).unwrap();
        assert_eq!((first.question.as_str(), first.answer.as_str()), ("", ""));
        assert_eq!(first.source, "alpha");
        let second = texts.get(1).unwrap();
        assert_eq!(second.question, "why é?");
        assert_eq!(second.human_answers, ["a", "b"]);
        assert_eq!(second.source, "beta");
        assert_eq!(texts.get(2).unwrap().answer, "a");
        assert!(texts.get(3).is_err());

        let mut changed = texts.clone();
        assert_eq!(changed, texts);
        let mut replaced = second.clone();
        replaced.answer = "zebra".into();
        changed.set(1, replaced).unwrap();
        assert_eq!(changed.get(1).unwrap().answer, "zebra");
        assert_eq!(changed.get(1).unwrap().source, "beta");
        assert_ne!(changed, texts);
        assert!(changed.set(3, second).is_err());
        assert_eq!(texts.iter().count(), 3);
    }
}

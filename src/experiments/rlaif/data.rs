//! RLAIF-V or OK-VQA rows to the task's samples: partition, tokenisation; images stay encoded (in memory
//! or in an image store file) and are preprocessed per batch.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use super::config::RlaifConfig;
use super::rows::VqaRows;
use super::spill::{RowText, SpilledText};
use super::texts::{SampleTexts, TextAt};
use crate::data::{RlaifVPartitionOptions, RlaifVScheme, partition_by_source_keys};
use crate::error::{FedError, Result};
use crate::experiments::vqa::{
    EncodedBytes, FrozenPrefixCache, ImagePreprocessor, SampleImage, VqaSample, VqaSplit,
    truncate_ids,
};
use crate::models::florence2::processor::{Florence2Processor, ProcessorError};

/// The experiment's data: only the samples some client uses, tokenised, their images still
/// encoded, with the clients' split over them.
#[derive(Debug, Clone)]
pub struct RlaifData {
    /// The samples (indexed by [`Self::split`]), shared with every rule's task; each keeps
    /// its encoded image (or where it is stored), decoded when a batch uses it.
    pub samples: Arc<Vec<VqaSample>>,
    /// Their text, in the same order (question and answers for test samples only, see
    /// [`SampleTexts`]).
    pub texts: SampleTexts,
    /// Per trainer, its train and test samples (one trainer when centralised).
    pub split: VqaSplit,
    /// Per trainer, the source datasets it holds.
    pub sources: Vec<Vec<String>>,
    /// Samples whose pixels were freed by [`Self::drop_cached_pixels`] (they can only be used
    /// through that cache).
    pub pixels_dropped: usize,
    /// Rows skipped because their question holds a Florence-2 task token (`<OCR>`, ...), which
    /// cannot be part of a VQA prompt.
    pub skipped_task_token: usize,
}

/// A row's prompt ids and label ids.
type Tokens = (Vec<u32>, Vec<u32>);

/// What a row is to the clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowUse {
    /// No client uses it.
    Unused,
    /// A client uses it.
    Usable,
    /// A client would use it, but its question holds a task token.
    TaskToken,
}

/// Whether `question` holds a Florence-2 task token (so cannot be a VQA prompt).
fn has_task_token(processor: &Florence2Processor, question: &str) -> Result<bool> {
    match processor.prompt_ids(question) {
        Ok(_) => Ok(false),
        Err(ProcessorError::TaskNotAlone { .. }) => Ok(true),
        Err(e) => Err(FedError::Task(format!("tokenising the question: {e}"))),
    }
}

/// Where row `r`'s text is kept for scoring: where spilled rows put it, else in memory.
fn text_at(data: VqaRows<'_>, r: usize, text: RowText<'_>) -> Option<TextAt> {
    match data {
        VqaRows::Spilled(rows) => rows.text_at(r).map(TextAt::Stored),
        _ => Some(TextAt::Memory(Arc::new(SpilledText {
            question: text.question.into_owned(),
            answer: text.answer.into_owned(),
            human_answers: text.human_answers.into_owned(),
        }))),
    }
}

/// Row `r`'s text: borrowed from in-memory rows, read back for spilled ones.
fn text_of(data: VqaRows<'_>, r: usize) -> Result<RowText<'_>> {
    let text = match data {
        VqaRows::Spilled(rows) => rows.text(r)?.map(RowText::from),
        rows => rows.row(r).map(RowText::from),
    };
    text.ok_or_else(|| FedError::Task(format!("row {r} is past the data's {}", data.len())))
}

/// Row `r`'s own encoded image and its content.
fn own_image(data: VqaRows<'_>, r: usize) -> Result<(EncodedBytes, Cow<'_, [u8]>)> {
    let missing = || FedError::Task(format!("row {r} is past the data's {}", data.len()));
    match data {
        VqaRows::Spilled(rows) => {
            let stored = rows.image(r).ok_or_else(missing)?;
            let content = stored.bytes()?.into_owned();
            Ok((stored, Cow::Owned(content)))
        }
        rows => {
            let bytes = rows.row(r).ok_or_else(missing)?.image_bytes();
            Ok((EncodedBytes::Memory(Arc::from(bytes)), Cow::Borrowed(bytes)))
        }
    }
}

/// The prompt and label ids of a row, already cut to `config`'s lengths (as the sample will
/// cut them: long RLAIF-V answers are not held whole for every row while preparing); `None`
/// when the question holds a task token.
fn tokenise(
    processor: &Florence2Processor,
    config: &RlaifConfig,
    question: &str,
    answer: &str,
) -> Result<Option<Tokens>> {
    let prompt = match processor.prompt_ids(question) {
        Ok(ids) => ids,
        Err(ProcessorError::TaskNotAlone { .. }) => return Ok(None),
        Err(e) => return Err(FedError::Task(format!("tokenising the question: {e}"))),
    };
    let labels = processor
        .tokenizer()
        .encode(answer)
        .map_err(|e| FedError::Task(format!("tokenising the answer: {e}")))?;
    Ok(Some((
        truncate_ids(&prompt, config.max_prompt_len)?,
        truncate_ids(&labels, config.max_answer_len)?,
    )))
}

impl RlaifData {
    /// Partitions `data` (RLAIF-V or OK-VQA rows, see [`VqaRows`]) per `config` (by source
    /// dataset grouped into `clients`, or IID, which OK-VQA's single source requires;
    /// centralised training merges every client's train and test splits into one trainer)
    /// and turns every sample used into a [`VqaSample`]: the image kept encoded (decoded and
    /// preprocessed by `processor` when a batch uses it), the question and the chosen answer
    /// tokenised and cut to `max_prompt_len` / `max_answer_len`. Rows whose question holds a
    /// task token are skipped and counted ([`Self::skipped_task_token`]).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for invalid settings, fewer sources than non-IID clients or
    /// non-IID OK-VQA clients or a client left without training samples, [`FedError::Task`]
    /// when tokenisation fails.
    pub fn prepare<'a>(
        config: &RlaifConfig,
        data: impl Into<VqaRows<'a>>,
        processor: &Florence2Processor,
    ) -> Result<Self> {
        Self::prepare_with_images(config, data, processor, |_| Ok(None))
    }

    /// [`Self::prepare`] where `images(row)` may say where row `row`'s image was moved (an
    /// [`crate::experiments::vqa::ImageStore`], for rows read with their `image_bytes`
    /// emptied); `None` keeps the row's own image (its bytes in memory, or where
    /// [`SpilledRows`](super::SpilledRows) put it).
    ///
    /// # Errors
    /// As [`Self::prepare`], and the errors of `images`.
    pub fn prepare_with_images<'a>(
        config: &RlaifConfig,
        data: impl Into<VqaRows<'a>>,
        processor: &Florence2Processor,
        mut images: impl FnMut(usize) -> Result<Option<EncodedBytes>>,
    ) -> Result<Self> {
        config.validate()?;
        let data: VqaRows<'a> = data.into();
        if data.dataset().iid_only() && !config.iid && !config.centralized && config.clients > 1 {
            return Err(FedError::config(
                "iid",
                format!(
                    "{} has a single source: its clients are IID shares",
                    data.dataset()
                ),
            ));
        }
        let scheme = if config.iid {
            RlaifVScheme::Iid {
                num_clients: config.clients,
                seed: config.seed,
            }
        } else {
            RlaifVScheme::GroupedBySource {
                num_clients: config.clients,
            }
        };
        let mut options = RlaifVPartitionOptions::new(scheme)
            .test_fraction(config.test_fraction)
            .seed(config.seed);
        if let Some(max) = config.max_samples_per_client {
            options = options.max_samples_per_client(max);
        }
        let clients = partition_by_source_keys(&data.source_keys(), &options)?;

        // Every row some client uses is looked at; a question holding a task token (`<OCR>`,
        // ...) cannot be a VQA prompt: its row is skipped and counted. Only a byte a row is
        // kept here: the rows are tokenised again, one by one, as their samples are made.
        let mut uses = vec![RowUse::Unused; data.len()];
        for client in &clients {
            for &r in client.train.iter().chain(&client.test) {
                let state = uses.get_mut(r).ok_or_else(|| {
                    FedError::Task(format!("partition names row {r} of {}", data.len()))
                })?;
                if *state == RowUse::Unused {
                    *state = if has_task_token(processor, &text_of(data, r)?.question)? {
                        RowUse::TaskToken
                    } else {
                        RowUse::Usable
                    };
                }
            }
        }
        let skipped_task_token = uses.iter().filter(|&&u| u == RowUse::TaskToken).count();

        // Only the samples some client uses become samples, in first-use order.
        let mut index: HashMap<usize, usize> = HashMap::new();
        let mut used: Vec<usize> = Vec::new();
        let mut local = |rows: &[usize]| -> Vec<usize> {
            rows.iter()
                .filter(|&&r| uses[r] == RowUse::Usable)
                .map(|&r| {
                    *index.entry(r).or_insert_with(|| {
                        used.push(r);
                        used.len() - 1
                    })
                })
                .collect()
        };
        let mut split = VqaSplit::default();
        let mut sources = Vec::new();
        for client in &clients {
            split.train.push(local(&client.train));
            split.test.push(local(&client.test));
            sources.push(client.sources.clone());
        }
        if config.centralized {
            split = VqaSplit {
                train: vec![split.train.concat()],
                test: vec![split.test.concat()],
                global_test: Vec::new(),
            };
            let mut all: Vec<String> = sources.concat();
            all.sort();
            all.dedup();
            sources = vec![all];
        }
        if let Some(k) = split.train.iter().position(Vec::is_empty) {
            return Err(FedError::config(
                "max_samples_per_client",
                format!("client {k} has no training sample"),
            ));
        }

        // Only test samples generate and score answers: only they keep their text.
        let mut is_test = vec![false; used.len()];
        for &i in split.test.iter().flatten().chain(&split.global_test) {
            if let Some(t) = is_test.get_mut(i) {
                *t = true;
            }
        }

        let preprocessor: Arc<dyn ImagePreprocessor> = Arc::new(processor.clone());
        let mut samples = Vec::with_capacity(used.len());
        let mut texts = SampleTexts::default();
        for (i, &r) in used.iter().enumerate() {
            let text = text_of(data, r)?;
            let (prompt, labels) = tokenise(processor, config, &text.question, &text.answer)?
                .ok_or_else(|| FedError::Task(format!("row {r} lost its prompt")))?;
            let (bytes, content) = match images(r)? {
                Some(stored) => {
                    let content = stored.bytes()?.into_owned();
                    (stored, Cow::Owned(content))
                }
                None => own_image(data, r)?,
            };
            // A sample whose image is in a store keeps its token ids there too.
            let store = match &bytes {
                EncodedBytes::Stored { store, .. } => Some(Arc::clone(store)),
                EncodedBytes::Memory(_) => None,
            };
            let mut sample = VqaSample::encoded(
                bytes,
                &content,
                preprocessor.clone(),
                &prompt,
                &labels,
                config.max_prompt_len,
                config.max_answer_len,
            )?;
            if let Some(store) = &store {
                sample = sample.with_ids_in(store)?;
            }
            samples.push(sample);
            let source = data
                .source(r)
                .ok_or_else(|| FedError::Task(format!("row {r} has no source")))?;
            let kept = if is_test[i] {
                text_at(data, r, text)
            } else {
                None
            };
            texts.push(source, kept)?;
        }
        split.validate(samples.len())?;
        Ok(Self {
            samples: Arc::new(samples),
            texts,
            split,
            sources,
            pixels_dropped: 0,
            skipped_task_token,
        })
    }

    /// Frees the preprocessed pixels (7 MB a sample at 768x768) of every sample whose frozen
    /// prefix `cache` holds, except each trainer's first `keep_test` test samples (they
    /// generate the answers written after the last round). Training and scoring then need
    /// that cache: [`super::run_rule`] refuses to run these data without one. Returns the
    /// number of samples freed.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when `cache` was built over another number of samples.
    pub fn drop_cached_pixels(
        &mut self,
        cache: &FrozenPrefixCache,
        keep_test: usize,
    ) -> Result<usize> {
        if cache.num_samples() != self.samples.len() {
            return Err(FedError::config(
                "cache",
                format!(
                    "was built over {} samples, the data have {}",
                    cache.num_samples(),
                    self.samples.len()
                ),
            ));
        }
        let mut keep = vec![false; self.samples.len()];
        for test in &self.split.test {
            for &i in test.iter().take(keep_test) {
                keep[i] = true;
            }
        }
        let samples = Arc::make_mut(&mut self.samples);
        let mut freed = 0;
        for (i, sample) in samples.iter_mut().enumerate() {
            if !keep[i] && cache.get(i).is_some() && sample.image.is_present() {
                sample.image = SampleImage::Dropped;
                freed += 1;
            }
        }
        self.pixels_dropped += freed;
        Ok(freed)
    }

    /// Number of trainers.
    pub fn num_trainers(&self) -> usize {
        self.split.train.len()
    }
}

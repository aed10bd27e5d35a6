//! RLAIF-V rows to the task's samples: partition, preprocessing, tokenisation.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::RlaifConfig;
use crate::data::{RlaifV, RlaifVPartitionOptions, RlaifVScheme, partition_rlaif_v};
use crate::error::{FedError, Result};
use crate::experiments::vqa::{FrozenPrefixCache, VqaSample, VqaSplit};
use crate::models::florence2::processor::Florence2Processor;

/// The question and reference answer of one sample, as text (for the generated-answers file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleText {
    /// The question.
    pub question: String,
    /// The chosen (reference) answer.
    pub answer: String,
    /// Its source dataset (`origin_dataset`).
    pub source: String,
    /// The human answers the VQA accuracy is computed against (OK-VQA's ten); empty when the
    /// data set has none (RLAIF-V).
    pub human_answers: Vec<String>,
}

/// The experiment's data: only the samples some client uses, preprocessed and tokenised, with
/// the clients' split over them.
#[derive(Debug, Clone)]
pub struct RlaifData {
    /// The samples (indexed by [`Self::split`]), shared with every rule's task (a
    /// preprocessed 768x768 image takes 7 MB).
    pub samples: Arc<Vec<VqaSample>>,
    /// Their text, in the same order.
    pub texts: Vec<SampleText>,
    /// Per trainer, its train and test samples (one trainer when centralised).
    pub split: VqaSplit,
    /// Per trainer, the source datasets it holds.
    pub sources: Vec<Vec<String>>,
    /// Samples whose pixels were freed by [`Self::drop_cached_pixels`] (they can only be used
    /// through that cache).
    pub pixels_dropped: usize,
}

impl RlaifData {
    /// Partitions `data` per `config` (by source dataset grouped into `clients`, or IID;
    /// centralised training merges every client's train and test splits into one trainer)
    /// and turns every sample used into a [`VqaSample`]: the image preprocessed by
    /// `processor` (its size), the question and the chosen answer tokenised and cut to
    /// `max_prompt_len` / `max_answer_len`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for invalid settings or fewer sources than non-IID clients,
    /// [`FedError::Data`] for an image that does not decode, [`FedError::Task`] when the
    /// processor fails.
    pub fn prepare(
        config: &RlaifConfig,
        data: &RlaifV,
        processor: &Florence2Processor,
    ) -> Result<Self> {
        config.validate()?;
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
        let clients = partition_rlaif_v(data, &options)?;

        // Only the samples some client uses are preprocessed, in first-use order.
        let mut index: BTreeMap<usize, usize> = BTreeMap::new();
        let mut used: Vec<usize> = Vec::new();
        let mut local = |rows: &[usize]| -> Vec<usize> {
            rows.iter()
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

        let rows = data.samples();
        let mut samples = Vec::with_capacity(used.len());
        let mut texts = Vec::with_capacity(used.len());
        for &r in &used {
            let row = &rows[r];
            let image = row.decode_image()?;
            let pixels = processor
                .preprocess(std::slice::from_ref(&image))
                .map_err(|e| FedError::Task(format!("preprocessing an image: {e}")))?;
            let size = pixels.shape[2];
            samples.push(VqaSample::from_text(
                processor,
                pixels.data,
                size,
                &row.question,
                &row.chosen,
                config.max_prompt_len,
                config.max_answer_len,
            )?);
            texts.push(SampleText {
                question: row.question.clone(),
                answer: row.chosen.clone(),
                source: row.origin_dataset.clone(),
                human_answers: Vec::new(),
            });
        }
        split.validate(samples.len())?;
        Ok(Self {
            samples: Arc::new(samples),
            texts,
            split,
            sources,
            pixels_dropped: 0,
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
            if !keep[i] && cache.get(i).is_some() && !sample.pixel_values.is_empty() {
                sample.pixel_values = Vec::new();
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

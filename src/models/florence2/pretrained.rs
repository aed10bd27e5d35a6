//! A ready-to-use Florence-2: the model and its processor from a hub id or a local folder, and
//! one call from an image and a task to the parsed answer (prompt, pre-processing, generation,
//! decoding, post-processing), as transformers' `Florence2Processor` + `generate` +
//! `post_process_generation` do together.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use fedvlm::models::florence2::generate::GenerationConfig;
//! use fedvlm::models::florence2::pretrained::{Florence2Pipeline, Florence2Query};
//!
//! let device = Default::default();
//! let pipeline = Florence2Pipeline::<Flex>::from_pretrained("microsoft/Florence-2-base", &device)?;
//! let config = pipeline.generation_config(); // Florence-2's: 3 beams, up to 1024 new tokens
//! let image = fedvlm::models::florence2::processor::load_image("cat.jpg")?;
//! let caption = pipeline.answer(&image, &Florence2Query::new("<CAPTION>"), &config)?;
//! let boxes = pipeline.answer(&image, &Florence2Query::new("<OD>"), &config)?;
//! let grounded = pipeline.answer(
//!     &image,
//!     &Florence2Query::new("<CAPTION_TO_PHRASE_GROUNDING>").with_input("a cat"),
//!     &config,
//! )?;
//! println!("{caption:?}\n{boxes:?}\n{grounded:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use ::image::DynamicImage;
use burn::prelude::*;
use burn::tensor::TensorData;
use thiserror::Error;

use super::config::Florence2Config;
use super::generate::GenerationConfig;
use super::hub::{Florence2Files, HubError, HubOptions};
use super::model::Florence2;
use super::processor::{Florence2Answer, Florence2Processor, ProcessorError, load_image};
use super::tokenizer::{BatchEncoding, BatchOptions};
use crate::error::FedError;
use crate::models::WeightsError;

/// Why a pipeline could not be built or could not answer.
#[derive(Debug, Error)]
pub enum PipelineError {
    /// The checkpoint's files could not be found (missing file, offline without cache, ...).
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The weights could not be loaded into the model.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The tokenizer, the image configuration or an image could not be read or processed.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// `config.json` is invalid, or the model refused its inputs or generation settings.
    #[error(transparent)]
    Model(#[from] FedError),
    /// The tokenizer has ids the model's embedding table does not have.
    #[error(
        "the tokenizer has {tokenizer} tokens but the model only {model}: tokenizer.json does \
         not belong to this checkpoint"
    )]
    VocabMismatch {
        /// The tokenizer's vocabulary size (Florence-2's added tokens included).
        tokenizer: usize,
        /// The model's vocabulary size.
        model: usize,
    },
    /// A special token has another id in the tokenizer than in the model's configuration.
    #[error("`{token}` is id {tokenizer} in the tokenizer but {model} in the model configuration")]
    SpecialToken {
        /// The token (`<s>`, `<pad>` or `</s>`).
        token: &'static str,
        /// Its id in the tokenizer.
        tokenizer: u32,
        /// Its id in the model configuration.
        model: u32,
    },
    /// A batch has a different number of images and queries.
    #[error("{images} images but {queries} queries")]
    BatchSize {
        /// The number of images.
        images: usize,
        /// The number of queries.
        queries: usize,
    },
}

/// What to ask about an image: a task token (`<CAPTION>`, `<OD>`, ...), optionally followed by
/// its input (`<CAPTION_TO_PHRASE_GROUNDING>` + `a cat`), or a free-text question (the question
/// is then the whole prompt and the answer is plain text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Florence2Query {
    /// The task token, or the question.
    pub task: String,
    /// The task's input, appended to the task token to form the prompt.
    pub text_input: Option<String>,
}

impl Florence2Query {
    /// A task without input, or a free-text question.
    pub fn new(task: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            text_input: None,
        }
    }

    /// The same task with an input (a phrase, an expression, a region as `<loc_*>` tokens).
    pub fn with_input(mut self, text_input: impl Into<String>) -> Self {
        self.text_input = Some(text_input.into());
        self
    }

    /// The prompt the processor reads: the task followed by its input, as in transformers'
    /// Florence-2 examples (`prompt = task_prompt + text_input`).
    pub fn prompt(&self) -> String {
        match &self.text_input {
            Some(input) => format!("{}{input}", self.task),
            None => self.task.clone(),
        }
    }
}

/// One answer of [`Florence2Pipeline::answer_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Florence2Output {
    /// The generated ids, from the decoder start token, padding removed.
    pub ids: Vec<u32>,
    /// The ids decoded with special tokens kept (what `post_process_generation` reads).
    pub text: String,
    /// The parsed answer.
    pub answer: Florence2Answer,
}

/// Florence-2 with its processor, ready to answer queries about images.
#[derive(Debug)]
pub struct Florence2Pipeline<B: Backend> {
    model: Florence2<B>,
    config: Florence2Config,
    processor: Florence2Processor,
    device: B::Device,
}

impl<B: Backend> Florence2Pipeline<B> {
    /// Loads a checkpoint from a local folder or a hub id (see [`Florence2Files::resolve`]:
    /// `HF_HUB_OFFLINE`, `HF_HUB_CACHE`, `HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN` are honoured).
    ///
    /// # Errors
    /// [`PipelineError::Hub`] when the files cannot be found or fetched,
    /// [`PipelineError::Model`] for an invalid `config.json`, [`PipelineError::Processor`] for
    /// an invalid `tokenizer.json` or `preprocessor_config.json`,
    /// [`PipelineError::VocabMismatch`] / [`PipelineError::SpecialToken`] for a tokenizer of
    /// another model, [`PipelineError::Weights`] for weights that do not fit the configuration.
    pub fn from_pretrained(model: &str, device: &B::Device) -> Result<Self, PipelineError> {
        Self::from_pretrained_with(model, &HubOptions::from_env(), device)
    }

    /// [`Self::from_pretrained`] with explicit hub options instead of the environment's.
    ///
    /// # Errors
    /// As [`Self::from_pretrained`].
    pub fn from_pretrained_with(
        model: &str,
        options: &HubOptions,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        let files = Florence2Files::resolve_with(model, options)?;
        Self::from_files(&files, device)
    }

    /// Loads resolved checkpoint files. The configuration and the tokenizer are read and
    /// checked against each other before the (large) weights are loaded.
    ///
    /// # Errors
    /// As [`Self::from_pretrained`], except [`PipelineError::Hub`].
    pub fn from_files(files: &Florence2Files, device: &B::Device) -> Result<Self, PipelineError> {
        let (config, layout) = Florence2Config::from_file(&files.config)?;
        let processor = Florence2Processor::from_files(files)?;
        check_tokenizer(&processor, &config, config.text.vocab_size)?;
        let model = Florence2::load_file(&files.weights, &config, layout, device)?;
        Self::new(model, config, processor, device)
    }

    /// Puts together a model (of `config`) and a processor.
    ///
    /// # Errors
    /// [`PipelineError::VocabMismatch`] when the tokenizer has more tokens than the model's
    /// embedding table, [`PipelineError::SpecialToken`] when `<s>`, `<pad>` or `</s>` have
    /// other ids than `config` says.
    pub fn new(
        model: Florence2<B>,
        config: Florence2Config,
        processor: Florence2Processor,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        check_tokenizer(&processor, &config, model.language_model.vocab_size())?;
        Ok(Self {
            model,
            config,
            processor,
            device: device.clone(),
        })
    }

    /// The model.
    pub fn model(&self) -> &Florence2<B> {
        &self.model
    }

    /// The model's configuration.
    pub fn config(&self) -> &Florence2Config {
        &self.config
    }

    /// The processor (tokenizer, image configuration, answer parser).
    pub fn processor(&self) -> &Florence2Processor {
        &self.processor
    }

    /// The processor, to change the answer parser's banned grounding phrases.
    pub fn processor_mut(&mut self) -> &mut Florence2Processor {
        &mut self.processor
    }

    /// The device the model lives on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Gives the model and the processor back (to fine-tune the model, for instance).
    pub fn into_parts(self) -> (Florence2<B>, Florence2Config, Florence2Processor) {
        (self.model, self.config, self.processor)
    }

    /// Florence-2's generation settings ([`GenerationConfig::florence2`]: 3 beams, no repeated
    /// 3-grams, up to 1024 new tokens) with the token ids and the generation defaults of the
    /// model's `text_config` ([`GenerationConfig::with_model_config`]). transformers 5 drops
    /// `forced_bos_token_id` from converted configurations; then `<s>` is forced first as in
    /// Microsoft's configuration.
    pub fn generation_config(&self) -> GenerationConfig {
        let text = &self.config.text;
        let mut config = GenerationConfig::florence2().with_model_config(text);
        if text.forced_bos_token_id.is_none() {
            config.forced_bos_token_id = Some(text.bos_token_id);
        }
        config
    }

    /// Answers one query about an image.
    ///
    /// # Errors
    /// As [`Self::answer_batch`].
    pub fn answer(
        &self,
        image: &DynamicImage,
        query: &Florence2Query,
        config: &GenerationConfig,
    ) -> Result<Florence2Answer, PipelineError> {
        let mut outputs = self.answer_batch(
            std::slice::from_ref(image),
            std::slice::from_ref(query),
            config,
        )?;
        Ok(outputs.remove(0).answer)
    }

    /// Answers one query about an image file (PNG or JPEG).
    ///
    /// # Errors
    /// [`PipelineError::Processor`] when the file cannot be read or decoded, otherwise as
    /// [`Self::answer_batch`].
    pub fn answer_file(
        &self,
        path: impl AsRef<Path>,
        query: &Florence2Query,
        config: &GenerationConfig,
    ) -> Result<Florence2Answer, PipelineError> {
        self.answer(&load_image(path)?, query, config)
    }

    /// Answers `queries[i]` about `images[i]` for every `i`, in one batch (prompts of
    /// different lengths are right-padded and masked). `config.max_new_tokens` is capped at
    /// the decoder's learned positions (1024 for Florence-2), beyond which no token can be
    /// generated.
    ///
    /// # Errors
    /// [`PipelineError::BatchSize`] when the counts differ, [`PipelineError::Processor`] for
    /// an invalid prompt (a task without input followed by text) or an image the processor
    /// cannot use, [`PipelineError::Model`] for invalid generation settings or an image size
    /// the model cannot take.
    pub fn answer_batch(
        &self,
        images: &[DynamicImage],
        queries: &[Florence2Query],
        config: &GenerationConfig,
    ) -> Result<Vec<Florence2Output>, PipelineError> {
        let rows = self.generate_ids(images, queries, config)?;
        rows.into_iter()
            .zip(images.iter().zip(queries))
            .map(|(mut ids, (image, query))| {
                // Keep up to the first end-of-sequence token after the start token: the rest
                // is padding.
                if let Some(eos) = config.eos_token_id
                    && let Some(end) = ids.iter().skip(1).position(|&id| id == eos)
                {
                    ids.truncate(end + 2);
                }
                let text = self.processor.decode(&ids)?;
                let size = (image.width(), image.height());
                let answer = self.processor.post_process(&text, &query.task, size);
                Ok(Florence2Output { ids, text, answer })
            })
            .collect()
    }

    /// The generation step of [`Self::answer_batch`]: prompts and images through the processor
    /// and the model, returning the generated ids as [`Florence2::generate`] does (each row
    /// from the decoder start token, finished rows padded to the longest).
    ///
    /// # Errors
    /// As [`Self::answer_batch`].
    pub fn generate_ids(
        &self,
        images: &[DynamicImage],
        queries: &[Florence2Query],
        config: &GenerationConfig,
    ) -> Result<Vec<Vec<u32>>, PipelineError> {
        if images.len() != queries.len() {
            return Err(PipelineError::BatchSize {
                images: images.len(),
                queries: queries.len(),
            });
        }
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let prompts: Vec<String> = queries.iter().map(Florence2Query::prompt).collect();
        let encoding = self
            .processor
            .prompt_batch(&prompts, &BatchOptions::default())?;
        let pixels = self.processor.preprocess(images)?;
        let (input_ids, mask) = prompt_tensors::<B>(&encoding, &self.device);
        let mut config = config.clone();
        config.max_new_tokens = config
            .max_new_tokens
            .min(self.config.text.max_position_embeddings);
        Ok(self
            .model
            .generate_masked(pixels.to_tensor(&self.device), input_ids, mask, &config)?)
    }
}

/// The prompt ids `[N, L]` and, when some row is padded, their mask `[N, L]` (1 keep, 0 pad).
fn prompt_tensors<B: Backend>(
    encoding: &BatchEncoding,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Option<Tensor<B, 2, Int>>) {
    let shape = [encoding.input_ids.len(), encoding.seq_len()];
    let ids = Tensor::from_data(TensorData::new(encoding.flat_ids_i64(), shape), device);
    let padded = encoding.attention_mask.iter().flatten().any(|&m| m == 0);
    let mask = padded.then(|| {
        let values: Vec<i64> = encoding
            .attention_mask
            .iter()
            .flatten()
            .map(|&m| i64::from(m))
            .collect();
        Tensor::from_data(TensorData::new(values, shape), device)
    });
    (ids, mask)
}

/// The tokenizer must fit the model's embedding table and agree on the special tokens.
fn check_tokenizer(
    processor: &Florence2Processor,
    config: &Florence2Config,
    model_vocab: usize,
) -> Result<(), PipelineError> {
    let tokenizer = processor.tokenizer();
    if tokenizer.vocab_size() > model_vocab {
        return Err(PipelineError::VocabMismatch {
            tokenizer: tokenizer.vocab_size(),
            model: model_vocab,
        });
    }
    let text = &config.text;
    let pairs = [
        ("<s>", tokenizer.bos_id(), text.bos_token_id),
        ("<pad>", tokenizer.pad_id(), text.pad_token_id),
        ("</s>", tokenizer.eos_id(), text.eos_token_id),
    ];
    for (token, tokenizer, model) in pairs {
        if tokenizer != model {
            return Err(PipelineError::SpecialToken {
                token,
                tokenizer,
                model,
            });
        }
    }
    Ok(())
}

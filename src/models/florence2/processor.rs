//! Florence-2's processor: task prompts to token ids, images to `pixel_values`, generated ids
//! back to text and structured answers, as transformers' `Florence2Processor` does.
//!
//! ```no_run
//! use fedvlm::models::florence2::processor::{load_image, Florence2Processor};
//! use fedvlm::models::florence2::tokenizer::Florence2Tokenizer;
//!
//! let tokenizer = Florence2Tokenizer::from_file("Florence-2-base/tokenizer.json")?;
//! let processor = Florence2Processor::new(tokenizer, Default::default());
//! let input_ids = processor.prompt_ids("<CAPTION>")?; // <s> What does the image describe? </s>
//! let pixels = processor.preprocess(&[load_image("cat.jpg")?])?; // [1, 3, 768, 768]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod image;
mod postprocess;
mod resize;
mod tasks;

use std::path::PathBuf;

use ::image::DynamicImage;
use thiserror::Error;

pub use self::image::{
    IMAGENET_MEAN, IMAGENET_STD, ImageConfig, PixelValues, load_image, preprocess_images,
    preprocess_rgb8, to_rgb8,
};
pub use postprocess::{
    BANNED_GROUNDING_TOKENS, Florence2Answer, PostProcessor, post_processing_kind,
};
pub use resize::{PassOrder, Resample, resize_rgb8, resize_rgb8_ordered};
pub use tasks::{TASKS_WITH_INPUT, TASKS_WITHOUT_INPUT, construct_prompt};

use super::hub::Florence2Files;
use super::tokenizer::{BatchEncoding, BatchOptions, Florence2Tokenizer, TokenizerError};

/// Why a prompt or an image could not be processed.
#[derive(Debug, Error)]
pub enum ProcessorError {
    /// A task without input (`<CAPTION>`, `<OD>`, ...) shares the prompt with other text.
    #[error("task token {task} should be the only content in the prompt, got {prompt:?}")]
    TaskNotAlone {
        /// The task token.
        task: String,
        /// The prompt.
        prompt: String,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An image file could not be decoded.
    #[error("cannot decode image {path}: {reason}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },
    /// Image data and its stated size disagree, or the output size is unusable.
    #[error("bad image: {0}")]
    ImageShape(String),
    /// A `preprocessor_config.json` is invalid or asks for something unsupported.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// The tokenizer, the image configuration and the answer parser, together.
#[derive(Debug, Clone)]
pub struct Florence2Processor {
    tokenizer: Florence2Tokenizer,
    image: ImageConfig,
    post: PostProcessor,
}

impl Florence2Processor {
    /// A processor from a tokenizer and an image configuration.
    pub fn new(tokenizer: Florence2Tokenizer, image: ImageConfig) -> Self {
        Self {
            tokenizer,
            image,
            post: PostProcessor::default(),
        }
    }

    /// The processor of a resolved checkpoint: its `tokenizer.json`, and its
    /// `preprocessor_config.json` when there is one (else Florence-2's defaults).
    pub fn from_files(files: &Florence2Files) -> Result<Self, ProcessorError> {
        let tokenizer = Florence2Tokenizer::from_file(&files.tokenizer)?;
        let image = match &files.preprocessor_config {
            Some(path) => ImageConfig::from_preprocessor_config(path)?,
            None => ImageConfig::default(),
        };
        Ok(Self::new(tokenizer, image))
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Florence2Tokenizer {
        &self.tokenizer
    }

    /// The image configuration.
    pub fn image_config(&self) -> &ImageConfig {
        &self.image
    }

    /// The answer parser (its banned grounding phrases can be changed).
    pub fn post_processor_mut(&mut self) -> &mut PostProcessor {
        &mut self.post
    }

    /// The encoder's text ids for a prompt: the task prompt turned into its sentence
    /// ([`construct_prompt`]), then `<s>` + tokens + `</s>`. transformers' processor writes
    /// the image placeholders before these; the model puts the image features there instead.
    pub fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, ProcessorError> {
        Ok(self.tokenizer.encode(&construct_prompt(prompt)?)?)
    }

    /// [`Self::prompt_ids`] for a batch, padded and truncated as `options` say.
    pub fn prompt_batch<S: AsRef<str>>(
        &self,
        prompts: &[S],
        options: &BatchOptions,
    ) -> Result<BatchEncoding, ProcessorError> {
        let sentences = prompts
            .iter()
            .map(|p| construct_prompt(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.tokenizer.encode_batch(&sentences, options)?)
    }

    /// Images to `pixel_values` `[N, 3, H, W]`.
    pub fn preprocess(&self, images: &[DynamicImage]) -> Result<PixelValues, ProcessorError> {
        preprocess_images(images, &self.image)
    }

    /// Generated ids to text, special tokens kept (what [`Self::post_process`] expects).
    pub fn decode(&self, ids: &[u32]) -> Result<String, ProcessorError> {
        Ok(self.tokenizer.decode(ids, false)?)
    }

    /// Parses decoded text for a task on an image of `(width, height)` pixels, as
    /// transformers' `post_process_generation`.
    pub fn post_process(&self, text: &str, task: &str, image_size: (u32, u32)) -> Florence2Answer {
        self.post.process(text, task, image_size)
    }
}

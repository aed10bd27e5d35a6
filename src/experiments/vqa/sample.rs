//! One visual-question-answering example, and batches of them as the model takes them (images
//! are decoded and preprocessed per batch, see [`super::image`]).
//!
//! Florence-2 is fine-tuned as transformers does it: the encoder reads the image features then
//! `<s> question </s>` (Florence-2's VQA prompt is the plain question); the labels are the
//! tokenised answer `<s> answer </s>` (`tokenizer(answer).input_ids`), and the decoder reads
//! the labels shifted right behind the decoder start token `</s>` (transformers'
//! `shift_tokens_right`). The loss covers the label tokens only: the prompt is on the encoder
//! side and never in the labels.

use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::TensorData;

use super::ids::{SampleIds, TokenIds};
use super::image::{EncodedBytes, ImagePreprocessor, ImageStore, SampleImage, digest16};

use crate::error::{FedError, Result};
use crate::models::florence2::processor::Florence2Processor;

/// The label value that the loss and the metrics ignore (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// BART's `<pad>` id: what [`shift_tokens_right`] writes where a label is [`IGNORE_INDEX`],
/// and what pads prompts.
pub const PAD_ID: u32 = 1;

/// BART's decoder start token (`</s>`).
pub const DECODER_START_ID: u32 = 2;

/// BART's `<s>`: the first label of every answer (`tokenizer(answer).input_ids`), left out of
/// the token-level scores (see [`super::loss::score_tokens`]).
pub const BOS_ID: u32 = 0;

/// One example: an image (preprocessed, or encoded and preprocessed when a batch needs it),
/// the prompt's ids and the answer's label ids (in memory, or in the image's store, read
/// back when a batch needs them: see [`SampleIds`]).
#[derive(Debug, Clone)]
pub struct VqaSample {
    /// The image; see [`SampleImage::pixels`].
    pub image: SampleImage,
    /// Side of the (square) preprocessed image.
    pub image_size: usize,
    /// Encoder text ids `<s> question </s>` and labels `<s> answer </s>`.
    pub ids: SampleIds,
    /// A digest of the image's content (the frozen-prefix cache's sample id).
    pub image_digest: [u8; 16],
}

/// Cuts `ids` (`<s> ... </s>`) to at most `max_length` tokens, keeping the last token (the
/// `</s>`), as transformers' `truncation=True, max_length=n` keeps the special tokens.
///
/// # Errors
/// [`FedError::InvalidConfig`] when `max_length < 2`.
pub fn truncate_ids(ids: &[u32], max_length: usize) -> Result<Vec<u32>> {
    if max_length < 2 {
        return Err(FedError::config(
            "max_length",
            format!("must leave room for <s> and </s>, got {max_length}"),
        ));
    }
    if ids.len() <= max_length {
        return Ok(ids.to_vec());
    }
    let mut out = ids[..max_length - 1].to_vec();
    out.extend(ids.last());
    Ok(out)
}

impl VqaSample {
    /// A sample from already processed parts; the prompt is cut to `max_prompt` tokens and the
    /// answer to `max_answer` (see [`truncate_ids`]).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when `pixel_values` does not hold `3 * size * size` values,
    /// a sequence is empty, or a maximum is below 2.
    pub fn new(
        pixel_values: Vec<f32>,
        image_size: usize,
        prompt_ids: &[u32],
        answer_ids: &[u32],
        max_prompt: usize,
        max_answer: usize,
    ) -> Result<Self> {
        if image_size == 0 || pixel_values.len() != 3 * image_size * image_size {
            return Err(FedError::config(
                "pixel_values",
                format!(
                    "holds {} values, a 3x{image_size}x{image_size} image needs {}",
                    pixel_values.len(),
                    3 * image_size * image_size
                ),
            ));
        }
        let bytes: Vec<u8> = pixel_values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let image_digest = digest16(&[b"pixels", &bytes]);
        Self::with_image(
            SampleImage::Pixels(pixel_values.into()),
            image_size,
            image_digest,
            prompt_ids,
            answer_ids,
            max_prompt,
            max_answer,
        )
    }

    /// A sample whose encoded image (`bytes`, whose content is `encoded`) is decoded and
    /// preprocessed by `preprocessor` when a batch needs it; ids are cut as in
    /// [`VqaSample::new`].
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] when a sequence is empty or a maximum is below 2.
    pub fn encoded(
        bytes: EncodedBytes,
        encoded: &[u8],
        preprocessor: Arc<dyn ImagePreprocessor>,
        prompt_ids: &[u32],
        answer_ids: &[u32],
        max_prompt: usize,
        max_answer: usize,
    ) -> Result<Self> {
        let image_size = preprocessor.image_size();
        let image_digest = digest16(&[b"encoded", encoded]);
        Self::with_image(
            SampleImage::Encoded {
                bytes,
                preprocessor,
            },
            image_size,
            image_digest,
            prompt_ids,
            answer_ids,
            max_prompt,
            max_answer,
        )
    }

    fn with_image(
        image: SampleImage,
        image_size: usize,
        image_digest: [u8; 16],
        prompt_ids: &[u32],
        answer_ids: &[u32],
        max_prompt: usize,
        max_answer: usize,
    ) -> Result<Self> {
        if prompt_ids.is_empty() || answer_ids.is_empty() {
            return Err(FedError::config(
                "ids",
                "the prompt and the answer need tokens",
            ));
        }
        Ok(Self {
            image,
            image_size,
            ids: SampleIds::memory(
                truncate_ids(prompt_ids, max_prompt)?,
                truncate_ids(answer_ids, max_answer)?,
            ),
            image_digest,
        })
    }

    /// The same sample with its token ids moved to `store` (see [`SampleIds::store`]):
    /// memory then keeps where they are, not the ids.
    ///
    /// # Errors
    /// As [`SampleIds::store`].
    pub fn with_ids_in(mut self, store: &Arc<ImageStore>) -> Result<Self> {
        self.ids = self.ids.store(store)?;
        Ok(self)
    }

    /// The prompt's and the answer's ids (read back from the store when stored).
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be read.
    pub fn token_ids(&self) -> Result<Arc<TokenIds>> {
        self.ids.get()
    }

    /// Number of prompt ids.
    pub fn prompt_len(&self) -> usize {
        self.ids.prompt_len()
    }

    /// Number of answer (label) ids.
    pub fn answer_len(&self) -> usize {
        self.ids.answer_len()
    }

    /// Tokenises `question` as the processor makes prompts
    /// ([`Florence2Processor::prompt_ids`]: a plain question stays as it is) and `answer` as
    /// the labels (`tokenizer(answer).input_ids`), both `<s> text </s>`, around already
    /// preprocessed pixels.
    ///
    /// # Errors
    /// [`FedError::Task`] when tokenisation fails, and as [`VqaSample::new`].
    pub fn from_text(
        processor: &Florence2Processor,
        pixel_values: Vec<f32>,
        image_size: usize,
        question: &str,
        answer: &str,
        max_prompt: usize,
        max_answer: usize,
    ) -> Result<Self> {
        let prompt = processor
            .prompt_ids(question)
            .map_err(|e| FedError::Task(format!("tokenising the question: {e}")))?;
        let labels = processor
            .tokenizer()
            .encode(answer)
            .map_err(|e| FedError::Task(format!("tokenising the answer: {e}")))?;
        Self::new(
            pixel_values,
            image_size,
            &prompt,
            &labels,
            max_prompt,
            max_answer,
        )
    }

    /// The decoder's input: the labels shifted right behind the decoder start token.
    ///
    /// # Errors
    /// As [`VqaSample::token_ids`].
    pub fn decoder_input_ids(&self) -> Result<Vec<u32>> {
        let ids = self.token_ids()?;
        let labels: Vec<i64> = ids.answer.iter().map(|&t| t as i64).collect();
        Ok(shift_tokens_right(&labels, PAD_ID, DECODER_START_ID))
    }
}

/// transformers' `shift_tokens_right` for one row: `[start, labels[..T-1]]`, with
/// [`IGNORE_INDEX`] replaced by `pad_id`.
pub fn shift_tokens_right(labels: &[i64], pad_id: u32, decoder_start_id: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(labels.len());
    if labels.is_empty() {
        return out;
    }
    out.push(decoder_start_id);
    out.extend(
        labels[..labels.len() - 1].iter().map(
            |&t| {
                if t == IGNORE_INDEX { pad_id } else { t as u32 }
            },
        ),
    );
    out
}

/// Label rows right-padded with [`IGNORE_INDEX`] to the longest, flattened `[N * T]`.
pub fn pad_labels(rows: &[&[u32]]) -> (Vec<i64>, [usize; 2]) {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rows.len() * t);
    for row in rows {
        out.extend(row.iter().map(|&id| id as i64));
        out.extend(std::iter::repeat_n(IGNORE_INDEX, t - row.len()));
    }
    (out, [rows.len(), t])
}

/// Id rows right-padded with `pad` to the longest, flattened, with the `[N, L]` attention mask
/// (`None` when no row is padded).
pub fn pad_ids(rows: &[&[u32]], pad: u32) -> (Vec<i64>, Option<Vec<i64>>, [usize; 2]) {
    let l = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * l);
    let mut mask = Vec::with_capacity(rows.len() * l);
    for row in rows {
        ids.extend(row.iter().map(|&id| id as i64));
        ids.extend(std::iter::repeat_n(pad as i64, l - row.len()));
        mask.extend(std::iter::repeat_n(1i64, row.len()));
        mask.extend(std::iter::repeat_n(0i64, l - row.len()));
    }
    let padded = rows.iter().any(|r| r.len() < l);
    (ids, padded.then_some(mask), [rows.len(), l])
}

/// A batch of samples as tensors.
#[derive(Debug, Clone)]
pub struct VqaBatch<B: Backend> {
    /// `[N, 3, H, W]`.
    pub pixel_values: Tensor<B, 4>,
    /// `[N, L]` prompts, right-padded with `<pad>`.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[N, L]` prompt mask (1 keep, 0 pad), `None` when no prompt is padded.
    pub attention_mask: Option<Tensor<B, 2, Int>>,
    /// `[N, T]` decoder inputs (shifted labels; padding is `<pad>`).
    pub decoder_input_ids: Tensor<B, 2, Int>,
    /// `[N, T]` labels, padding [`IGNORE_INDEX`].
    pub labels: Tensor<B, 2, Int>,
}

/// The decoder inputs `[N, T]` and labels `[N, T]` of `samples`.
///
/// # Errors
/// As [`VqaSample::token_ids`].
pub fn decoder_tensors<B: Backend>(
    samples: &[&VqaSample],
    device: &B::Device,
) -> Result<(Tensor<B, 2, Int>, Tensor<B, 2, Int>)> {
    let ids = samples
        .iter()
        .map(|s| s.token_ids())
        .collect::<Result<Vec<_>>>()?;
    Ok(decoder_tensors_of(&ids, device))
}

/// [`decoder_tensors`] from ids already read.
fn decoder_tensors_of<B: Backend>(
    ids: &[Arc<TokenIds>],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let rows: Vec<&[u32]> = ids.iter().map(|s| s.answer.as_slice()).collect();
    let (labels, shape) = pad_labels(&rows);
    let decoder: Vec<i64> = labels
        .chunks(shape[1].max(1))
        .flat_map(|row| shift_tokens_right(row, PAD_ID, DECODER_START_ID))
        .map(|t| t as i64)
        .collect();
    (
        Tensor::from_data(TensorData::new(decoder, shape), device),
        Tensor::from_data(TensorData::new(labels, shape), device),
    )
}

impl<B: Backend> VqaBatch<B> {
    /// Pads and stacks `samples` (all with images of the same size).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for an empty batch or images of different sizes.
    pub fn new(samples: &[&VqaSample], device: &B::Device) -> Result<Self> {
        let first = samples
            .first()
            .ok_or_else(|| FedError::config("batch", "is empty"))?;
        let size = first.image_size;
        let mut pixels = Vec::with_capacity(samples.len() * 3 * size * size);
        for s in samples {
            if s.image_size != size {
                return Err(FedError::config(
                    "pixel_values",
                    format!("images of {size} and {} pixels in one batch", s.image_size),
                ));
            }
            let values = s.image.pixels()?;
            if values.len() != 3 * size * size {
                return Err(FedError::config(
                    "pixel_values",
                    format!(
                        "an image preprocessed to {} values, {size}x{size} needs {}",
                        values.len(),
                        3 * size * size
                    ),
                ));
            }
            pixels.extend_from_slice(&values);
        }
        let n = samples.len();
        let tokens = samples
            .iter()
            .map(|s| s.token_ids())
            .collect::<Result<Vec<_>>>()?;
        let prompts: Vec<&[u32]> = tokens.iter().map(|t| t.prompt.as_slice()).collect();
        let (ids, mask, shape) = pad_ids(&prompts, PAD_ID);
        let (decoder_input_ids, labels) = decoder_tensors_of(&tokens, device);
        Ok(Self {
            pixel_values: Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device),
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: mask.map(|m| Tensor::from_data(TensorData::new(m, shape), device)),
            decoder_input_ids,
            labels,
        })
    }
}

//! Florence-2's tokenizer: BART's byte-level BPE (`tokenizer.json`) plus the 1024 task and
//! location tokens that Florence-2's processor adds at run time.
//!
//! Microsoft's `tokenizer.json` is plain BART (50265 tokens). Their `Florence2Processor` then
//! calls `tokenizer.add_special_tokens` with, in this order, `<od> </od> <ocr> </ocr>`,
//! `<loc_0>`..`<loc_999>` and 20 more tokens ending with `<and>` (ids 50265..51288 for the real
//! vocabulary, `<loc_0>` = 50269). transformers' converted checkpoints ship a `tokenizer.json`
//! that already holds them (plus `<image>` = 51289); adding a token that exists keeps its id, so
//! [`Florence2Tokenizer::from_file`] accepts both files and gives the same ids.
//!
//! Prompts are encoded as the processor does: `<s>` + the text's tokens + `</s>`.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tokenizers::{AddedToken, Tokenizer};

/// The beginning-of-sequence token.
pub const BOS_TOKEN: &str = "<s>";
/// The padding token.
pub const PAD_TOKEN: &str = "<pad>";
/// The end-of-sequence token (also BART's decoder start token).
pub const EOS_TOKEN: &str = "</s>";

/// The 20 tokens Florence-2 adds after the 1000 location tokens, in order.
const TRAILING_TOKENS: [&str; 20] = [
    "<cap>",
    "</cap>",
    "<ncap>",
    "</ncap>",
    "<dcap>",
    "</dcap>",
    "<grounding>",
    "</grounding>",
    "<seg>",
    "</seg>",
    "<sep>",
    "<region_cap>",
    "</region_cap>",
    "<region_to_desciption>",
    "</region_to_desciption>",
    "<proposal>",
    "</proposal>",
    "<poly>",
    "</poly>",
    "<and>",
];

/// The number of location tokens (`<loc_0>`..`<loc_999>`): coordinates are quantised into
/// this many bins per axis.
pub const NUM_LOCATION_TOKENS: usize = 1000;

/// The 1024 tokens Florence-2 adds to BART's vocabulary, in the order of Microsoft's processor
/// (`<od>`, `</od>`, `<ocr>`, `</ocr>`, `<loc_0>`..`<loc_999>`, `<cap>`, ..., `<and>`).
pub fn florence2_added_tokens() -> Vec<String> {
    let mut tokens: Vec<String> = ["<od>", "</od>", "<ocr>", "</ocr>"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    tokens.extend((0..NUM_LOCATION_TOKENS).map(|i| format!("<loc_{i}>")));
    tokens.extend(TRAILING_TOKENS.iter().map(|t| t.to_string()));
    tokens
}

/// Why a tokenizer could not be loaded or could not encode or decode.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The tokenizer file is not a valid `tokenizer.json`.
    #[error("{path} is not a valid tokenizer.json: {reason}")]
    Parse {
        /// The file (`<memory>` for [`Florence2Tokenizer::from_bytes`]).
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A token the model needs is not in the vocabulary.
    #[error("{path}: the vocabulary has no `{token}` token")]
    MissingToken {
        /// The file.
        path: PathBuf,
        /// The token.
        token: String,
    },
    /// The vocabulary already holds some Florence-2 tokens at ids that are not consecutive, so
    /// location tokens cannot be mapped to ids by arithmetic.
    #[error(
        "{path}: `{token}` has id {found}, expected {expected} (Florence-2 tokens out of order)"
    )]
    TokenOrder {
        /// The file.
        path: PathBuf,
        /// The token.
        token: String,
        /// The id it should have.
        expected: u32,
        /// The id it has.
        found: u32,
    },
    /// `max_length` is too short to hold `<s>` and `</s>`.
    #[error("max_length {0} cannot hold <s> and </s>")]
    MaxLength(usize),
    /// The tokenizers library failed while encoding or decoding.
    #[error("tokenizer failure: {0}")]
    Tokenizers(String),
}

/// How [`Florence2Tokenizer::encode_batch`] pads a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Pad every sequence to the longest one of the batch (transformers' `padding="longest"`).
    Longest,
    /// Pad every sequence to exactly this length (transformers' `padding="max_length"`);
    /// longer sequences are not cut unless [`BatchOptions::max_length`] says so.
    Fixed(usize),
}

/// Padding and truncation for [`Florence2Tokenizer::encode_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// How to pad (always on the right, with `<pad>`, as BART does).
    pub padding: Padding,
    /// Cut each sequence to at most this many tokens, `<s>` and `</s>` included
    /// (transformers' `truncation=True, max_length=n`: the text is cut, the special tokens kept).
    pub max_length: Option<usize>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            padding: Padding::Longest,
            max_length: None,
        }
    }
}

/// A padded batch of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEncoding {
    /// `[batch][seq]` token ids, every row of the same length.
    pub input_ids: Vec<Vec<u32>>,
    /// `[batch][seq]`: 1 for a real token, 0 for padding.
    pub attention_mask: Vec<Vec<u32>>,
}

impl BatchEncoding {
    /// The sequence length of every row (0 for an empty batch).
    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }

    /// The ids flattened row-major as `i64`, the layout of a `[batch, seq]` int tensor.
    pub fn flat_ids_i64(&self) -> Vec<i64> {
        self.input_ids
            .iter()
            .flatten()
            .map(|&id| id as i64)
            .collect()
    }
}

/// BART's byte-level BPE tokenizer with Florence-2's 1024 added tokens.
#[derive(Debug, Clone)]
pub struct Florence2Tokenizer {
    inner: Tokenizer,
    bos_id: u32,
    pad_id: u32,
    eos_id: u32,
    loc0_id: u32,
}

impl Florence2Tokenizer {
    /// Loads a `tokenizer.json` (Microsoft's plain BART file or transformers' converted one)
    /// and adds Florence-2's tokens.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Like [`Self::from_file`], from the file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        Self::parse(bytes, Path::new("<memory>"))
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Self, TokenizerError> {
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        // Ids are produced exactly as requested: no truncation or padding from the file.
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        inner.with_padding(None);
        let added = florence2_added_tokens();
        inner
            .add_special_tokens(added.iter().map(|t| AddedToken::from(t.as_str(), true)))
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        let id = |token: &str| {
            inner
                .token_to_id(token)
                .ok_or_else(|| TokenizerError::MissingToken {
                    path: path.to_path_buf(),
                    token: token.to_string(),
                })
        };
        let (bos_id, pad_id, eos_id) = (id(BOS_TOKEN)?, id(PAD_TOKEN)?, id(EOS_TOKEN)?);
        let first = id(&added[0])?;
        for (offset, token) in added.iter().enumerate() {
            let found = id(token)?;
            let expected = first + offset as u32;
            if found != expected {
                return Err(TokenizerError::TokenOrder {
                    path: path.to_path_buf(),
                    token: token.clone(),
                    expected,
                    found,
                });
            }
        }
        Ok(Self {
            inner,
            bos_id,
            pad_id,
            eos_id,
            loc0_id: first + 4,
        })
    }

    /// The id of `<s>` (0 for BART).
    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }

    /// The id of `<pad>` (1 for BART).
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// The id of `</s>` (2 for BART; also the decoder start token).
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// The id of `<loc_{bin}>`, or `None` when `bin` is 1000 or more.
    pub fn loc_token_id(&self, bin: usize) -> Option<u32> {
        (bin < NUM_LOCATION_TOKENS).then(|| self.loc0_id + bin as u32)
    }

    /// The id of a token (special or not), if the vocabulary has it.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id, if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The vocabulary size, added tokens included (51289 for Microsoft's file).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The wrapped `tokenizers` tokenizer.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    /// The tokens of `text` without `<s>`/`</s>` (transformers' `add_special_tokens=False`).
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// `<s>` + the tokens of `text` + `</s>`, as Florence-2's processor encodes a prompt.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_truncated(text, None)
    }

    fn encode_truncated(
        &self,
        text: &str,
        max_length: Option<usize>,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut body = self.encode_text(text)?;
        if let Some(max) = max_length {
            let room = max.checked_sub(2).ok_or(TokenizerError::MaxLength(max))?;
            body.truncate(room);
        }
        let mut ids = Vec::with_capacity(body.len() + 2);
        ids.push(self.bos_id);
        ids.extend(body);
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Encodes several texts as [`Self::encode`] does, truncated and right-padded with `<pad>`.
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        options: &BatchOptions,
    ) -> Result<BatchEncoding, TokenizerError> {
        let rows = texts
            .iter()
            .map(|t| self.encode_truncated(t.as_ref(), options.max_length))
            .collect::<Result<Vec<_>, _>>()?;
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        let target = match options.padding {
            Padding::Longest => longest,
            Padding::Fixed(n) => n.max(longest),
        };
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut attention_mask = Vec::with_capacity(rows.len());
        for mut row in rows {
            let len = row.len();
            row.resize(target, self.pad_id);
            let mut mask = vec![1u32; len];
            mask.resize(target, 0);
            input_ids.push(row);
            attention_mask.push(mask);
        }
        Ok(BatchEncoding {
            input_ids,
            attention_mask,
        })
    }

    /// Ids back to text. With `skip_special_tokens`, `<s>`, `</s>`, `<pad>`, `<unk>`, `<mask>`
    /// and every Florence-2 token (location tokens included) are dropped.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Tokenizers(e.to_string()))
    }

    /// Decodes each row of a batch.
    pub fn decode_batch<R: AsRef<[u32]>>(
        &self,
        rows: &[R],
        skip_special_tokens: bool,
    ) -> Result<Vec<String>, TokenizerError> {
        rows.iter()
            .map(|r| self.decode(r.as_ref(), skip_special_tokens))
            .collect()
    }
}

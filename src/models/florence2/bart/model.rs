//! The BART encoder-decoder with its tied language-model head (the language model of
//! transformers' `Florence2ForConditionalGeneration`: `model.language_model` plus `lm_head`).

use burn::nn::Embedding;
use burn::prelude::*;

use super::attention::padding_mask;
use super::config::BartConfig;
use super::decoder::BartDecoder;
use super::encoder::BartEncoder;
use super::init::Init;
use super::kv_cache::KvCache;
use crate::error::{FedError, Result};

/// BART as Florence-2 uses it. Field names are transformers' (native) attribute names, so a
/// parameter's burn path is its checkpoint key without the `model.language_model.` prefix:
/// `shared.weight`, `encoder.layers.0.self_attn.q_proj.weight`, `decoder.layernorm_embedding.weight`...
///
/// * The encoder takes embeddings ([`BartModel::encode`]): Florence-2 feeds image features
///   followed by token embeddings ([`BartModel::embed_tokens`]).
/// * The decoder ([`BartModel::decode`]) runs with or without a [`KvCache`]; it can also run in
///   two parts, [`BartModel::decode_prefix`] (embeddings and every layer but the last) and
///   [`BartModel::decode_last_layer`] (the last layer and the logits), so the frozen prefix's
///   hidden states can be cached when only the last layer carries adapters.
/// * The language-model head is `shared` itself (tied): `logits = hidden shared^T`, plus
///   `final_logits_bias` when one was set ([`BartModel::with_final_logits_bias`]; Microsoft's
///   checkpoints store an all-zero one, transformers' native Florence-2 has none).
/// * Every linear layer of the attentions and feed-forwards is a [`crate::lora::Dense`]:
///   see [`BartModel::dense_paths`] and [`BartModel::map_dense`] to insert adapters.
#[derive(Module, Debug)]
pub struct BartModel<B: Backend> {
    /// Token embeddings, `[vocab_size, d_model]`, shared by encoder, decoder and `lm_head`.
    pub shared: Embedding<B>,
    /// The encoder.
    pub encoder: BartEncoder<B>,
    /// The decoder.
    pub decoder: BartDecoder<B>,
    /// Added to the logits when set (a constant, not a parameter).
    pub final_logits_bias: Option<Tensor<B, 1>>,
    /// Factor applied to token embeddings (`sqrt(d_model)` with `scale_embedding`, else 1).
    pub embed_scale: f64,
}

impl<B: Backend> BartModel<B> {
    /// A randomly initialised model (as transformers initialises BART, drawn from `seed`).
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for an invalid `config`.
    pub fn new(config: &BartConfig, seed: u64, device: &B::Device) -> Result<Self> {
        config.validate()?;
        let activation = config.activation()?;
        let mut init = Init::new(seed);
        let shared = init.embedding(config.vocab_size, config.d_model, device);
        let encoder = BartEncoder::new(config, activation, &mut init, device);
        let decoder = BartDecoder::new(config, activation, &mut init, device);
        Ok(Self {
            shared,
            encoder,
            decoder,
            final_logits_bias: None,
            embed_scale: config.embed_scale(),
        })
    }

    /// Sets the constant added to the logits (`[vocab_size]`, Microsoft's
    /// `final_logits_bias`), or removes it with `None`.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] if the bias does not have one value per token.
    pub fn with_final_logits_bias(mut self, bias: Option<Tensor<B, 1>>) -> Result<Self> {
        if let Some(bias) = &bias
            && bias.dims()[0] != self.vocab_size()
        {
            return Err(FedError::config(
                "final_logits_bias",
                format!(
                    "has {} values, the vocabulary {}",
                    bias.dims()[0],
                    self.vocab_size()
                ),
            ));
        }
        self.final_logits_bias = bias;
        Ok(self)
    }

    /// Width of the hidden states.
    pub fn d_model(&self) -> usize {
        self.shared.weight.lazy_shape()[1]
    }

    /// Tokens of the vocabulary (rows of `shared`, outputs of [`BartModel::logits`]).
    pub fn vocab_size(&self) -> usize {
        self.shared.weight.lazy_shape()[0]
    }

    /// Decoder layers.
    pub fn num_decoder_layers(&self) -> usize {
        self.decoder.layers.len()
    }

    /// An empty key/value cache for [`BartModel::decode`].
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.num_decoder_layers())
    }

    /// Token embeddings `[N, L, d]` of `ids` (`[N, L]`), times the embedding scale: what
    /// transformers' encoder computes from `input_ids` before adding positions.
    pub fn embed_tokens(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let embeds = self.shared.forward(ids);
        if self.embed_scale == 1.0 {
            embeds
        } else {
            embeds.mul_scalar(self.embed_scale)
        }
    }

    /// Runs the encoder on `inputs_embeds` (`[N, S, d]`, positions not yet added);
    /// `attention_mask` (`[N, S]`, 1 = attend, 0 = padding) defaults to all ones.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for a width other than `d_model`, more positions than the
    /// tables hold, or a mask of another shape.
    pub fn encode(
        &self,
        inputs_embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 3>> {
        let [n, s, d] = inputs_embeds.dims();
        self.check_width("inputs_embeds", d)?;
        check_positions("inputs_embeds", s, self.encoder.max_positions())?;
        check_mask(&attention_mask, [n, s])?;
        Ok(self.encoder.forward(inputs_embeds, attention_mask))
    }

    /// Runs the decoder on `decoder_input_ids` (`[N, T]`) against the encoder output
    /// (`[N, S, d]`, with its `[N, S]` mask), returning the last layer's hidden states
    /// `[N, T, d]` (transformers' `last_hidden_state`). With a cache, the ids are the new
    /// tokens only: positions continue after the cached ones, whose keys and values are
    /// reused, and the cache is extended.
    ///
    /// # Errors
    /// [`FedError::InvalidConfig`] for inconsistent shapes, a cache of another model or batch,
    /// or more positions than the tables hold.
    pub fn decode(
        &self,
        decoder_input_ids: Tensor<B, 2, Int>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 2, Int>>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        let last = self.num_decoder_layers() - 1;
        let hidden = self.run_decoder(
            decoder_input_ids,
            encoder_hidden.clone(),
            encoder_mask.clone(),
            cache.as_deref_mut(),
            last,
        )?;
        let mask = encoder_mask.map(padding_mask);
        let layer_cache = cache.and_then(|c| c.layer_mut(last));
        Ok(self.decoder.layers[last].forward(hidden, encoder_hidden, mask, layer_cache))
    }

    /// The first part of [`BartModel::decode`]: token embeddings, positions,
    /// `layernorm_embedding` and every decoder layer but the last, giving the hidden states
    /// `[N, T, d]` the last layer takes. Follow with [`BartModel::decode_last_layer`] (with the
    /// same cache, if any).
    ///
    /// # Errors
    /// As [`BartModel::decode`].
    pub fn decode_prefix(
        &self,
        decoder_input_ids: Tensor<B, 2, Int>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        let last = self.num_decoder_layers() - 1;
        self.run_decoder(decoder_input_ids, encoder_hidden, encoder_mask, cache, last)
    }

    /// The second part of [`BartModel::decode`]: the last decoder layer applied to the output
    /// of [`BartModel::decode_prefix`], then the language-model head, giving the logits
    /// `[N, T, vocab_size]` (`logits(decode(..))`).
    ///
    /// # Errors
    /// As [`BartModel::decode`].
    pub fn decode_last_layer(
        &self,
        prefix_hidden: Tensor<B, 3>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>> {
        let [n, _, d] = prefix_hidden.dims();
        self.check_width("prefix_hidden", d)?;
        self.check_encoder(n, &encoder_hidden, &encoder_mask)?;
        let last = self.num_decoder_layers() - 1;
        let layer_cache = match cache {
            Some(cache) => {
                self.check_cache(cache, n)?;
                cache.layer_mut(last)
            }
            None => None,
        };
        let mask = encoder_mask.map(padding_mask);
        let hidden =
            self.decoder.layers[last].forward(prefix_hidden, encoder_hidden, mask, layer_cache);
        Ok(self.logits(hidden))
    }

    /// The language-model head: `hidden shared^T (+ final_logits_bias)`, `[N, T, vocab_size]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        // A 2-D product with the transposed view: `linear` would broadcast the weight to rank
        // 3, and the CPU backend then copies the whole transposed embedding (157 MB at base
        // size) on every call, 40 % of a frozen-prefix training step.
        let [n, t, d] = hidden.dims();
        let weight = self.shared.weight.val();
        let vocab = weight.dims()[0];
        let logits = hidden
            .reshape([n * t, d])
            .matmul(weight.transpose())
            .reshape([n, t, vocab]);
        match &self.final_logits_bias {
            Some(bias) => logits + bias.clone().unsqueeze::<3>(),
            None => logits,
        }
    }

    /// Encoder, decoder and head in one call (teacher forcing): logits `[N, T, vocab_size]`.
    ///
    /// # Errors
    /// As [`BartModel::encode`] and [`BartModel::decode`].
    pub fn forward(
        &self,
        inputs_embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        decoder_input_ids: Tensor<B, 2, Int>,
    ) -> Result<Tensor<B, 3>> {
        let encoder_hidden = self.encode(inputs_embeds, attention_mask.clone())?;
        let hidden = self.decode(decoder_input_ids, encoder_hidden, attention_mask, None)?;
        Ok(self.logits(hidden))
    }

    /// Embeddings and decoder layers `0 .. end`.
    fn run_decoder(
        &self,
        ids: Tensor<B, 2, Int>,
        encoder_hidden: Tensor<B, 3>,
        encoder_mask: Option<Tensor<B, 2, Int>>,
        mut cache: Option<&mut KvCache<B>>,
        end: usize,
    ) -> Result<Tensor<B, 3>> {
        let [n, t] = ids.dims();
        self.check_encoder(n, &encoder_hidden, &encoder_mask)?;
        let past = match cache.as_deref() {
            Some(cache) => {
                self.check_cache(cache, n)?;
                cache.seq_len()
            }
            None => 0,
        };
        check_positions("decoder_input_ids", past + t, self.decoder.max_positions())?;
        let mut hidden = self.decoder.embed(self.embed_tokens(ids), past);
        let mask = encoder_mask.map(padding_mask);
        for (i, layer) in self.decoder.layers[..end].iter().enumerate() {
            let layer_cache = cache.as_deref_mut().and_then(|c| c.layer_mut(i));
            hidden = layer.forward(hidden, encoder_hidden.clone(), mask.clone(), layer_cache);
        }
        Ok(hidden)
    }

    fn check_width(&self, field: &'static str, d: usize) -> Result<()> {
        if d != self.d_model() {
            return Err(FedError::config(
                field,
                format!("has width {d}, the model {}", self.d_model()),
            ));
        }
        Ok(())
    }

    fn check_encoder(
        &self,
        n: usize,
        encoder_hidden: &Tensor<B, 3>,
        encoder_mask: &Option<Tensor<B, 2, Int>>,
    ) -> Result<()> {
        let [en, s, d] = encoder_hidden.dims();
        self.check_width("encoder_hidden", d)?;
        if en != n {
            return Err(FedError::config(
                "encoder_hidden",
                format!("has {en} rows, the decoder input {n}"),
            ));
        }
        check_mask(encoder_mask, [n, s])
    }

    fn check_cache(&self, cache: &KvCache<B>, n: usize) -> Result<()> {
        if cache.num_layers() != self.num_decoder_layers() {
            return Err(FedError::config(
                "cache",
                format!(
                    "covers {} layers, the decoder has {}",
                    cache.num_layers(),
                    self.num_decoder_layers()
                ),
            ));
        }
        match cache.batch_size() {
            Some(rows) if rows != n => Err(FedError::config(
                "cache",
                format!("holds {rows} rows, the input has {n}"),
            )),
            _ => Ok(()),
        }
    }
}

fn check_positions(field: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(FedError::config(
            field,
            format!("needs {len} positions, the model has {max}"),
        ));
    }
    Ok(())
}

fn check_mask(mask: &Option<Tensor<impl Backend, 2, Int>>, expected: [usize; 2]) -> Result<()> {
    match mask {
        Some(mask) if mask.dims() != expected => Err(FedError::config(
            "attention_mask",
            format!("has shape {:?}, expected {expected:?}", mask.dims()),
        )),
        _ => Ok(()),
    }
}

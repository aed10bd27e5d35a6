//! Finding and replacing BART's linear layers by module path, so adapters can be inserted at
//! any of them (`decoder.layers.5.self_attn.q_proj`, `encoder.layers.0.fc1`, ...).

use burn::prelude::*;

use super::attention::BartAttention;
use super::decoder::BartDecoderLayer;
use super::encoder::BartEncoderLayer;
use super::model::BartModel;
use crate::error::{FedError, Result};
use crate::lora::Dense;

const PROJECTIONS: [&str; 4] = ["q_proj", "k_proj", "v_proj", "out_proj"];

impl<B: Backend> BartModel<B> {
    /// Module paths of every [`Dense`] layer, in forward order: per encoder layer
    /// `self_attn.{q,k,v,out}_proj`, `fc1`, `fc2`; per decoder layer the same plus
    /// `encoder_attn.{q,k,v,out}_proj` after `self_attn`.
    pub fn dense_paths(&self) -> Vec<String> {
        let mut paths = Vec::new();
        for i in 0..self.encoder.layers.len() {
            let prefix = format!("encoder.layers.{i}");
            paths.extend(
                PROJECTIONS
                    .iter()
                    .map(|p| format!("{prefix}.self_attn.{p}")),
            );
            paths.push(format!("{prefix}.fc1"));
            paths.push(format!("{prefix}.fc2"));
        }
        for i in 0..self.decoder.layers.len() {
            let prefix = format!("decoder.layers.{i}");
            for attn in ["self_attn", "encoder_attn"] {
                paths.extend(PROJECTIONS.iter().map(|p| format!("{prefix}.{attn}.{p}")));
            }
            paths.push(format!("{prefix}.fc1"));
            paths.push(format!("{prefix}.fc2"));
        }
        paths
    }

    /// The paper's pLoRA placement: the last decoder layer's self-attention `q_proj` and
    /// `v_proj` (`decoder.layers.5.self_attn.q_proj` and `...v_proj` for Florence-2-base).
    pub fn default_adapter_targets(&self) -> Vec<String> {
        let last = self.num_decoder_layers() - 1;
        ["q_proj", "v_proj"]
            .iter()
            .map(|p| format!("decoder.layers.{last}.self_attn.{p}"))
            .collect()
    }

    /// The layer at `path` (one of [`BartModel::dense_paths`]).
    pub fn dense(&self, path: &str) -> Option<&Dense<B>> {
        let (stack, index, rest) = split_path(path)?;
        match stack {
            Stack::Encoder => {
                let layer = self.encoder.layers.get(index)?;
                match rest.as_slice() {
                    ["self_attn", p] => projection(&layer.self_attn, p),
                    ["fc1"] => Some(&layer.fc1),
                    ["fc2"] => Some(&layer.fc2),
                    _ => None,
                }
            }
            Stack::Decoder => {
                let layer = self.decoder.layers.get(index)?;
                match rest.as_slice() {
                    ["self_attn", p] => projection(&layer.self_attn, p),
                    ["encoder_attn", p] => projection(&layer.encoder_attn, p),
                    ["fc1"] => Some(&layer.fc1),
                    ["fc2"] => Some(&layer.fc2),
                    _ => None,
                }
            }
        }
    }

    /// Replaces the layer at `path` by `f(layer)`, for example
    /// `|dense| dense.adapt(&lora, seed, path)` to insert a [`crate::PersonalizedLora`].
    ///
    /// # Errors
    /// [`FedError::UnsupportedLayer`] if `path` is not one of [`BartModel::dense_paths`], and
    /// whatever `f` returns (the model is dropped on error).
    pub fn map_dense(
        mut self,
        path: &str,
        f: impl FnOnce(Dense<B>) -> Result<Dense<B>>,
    ) -> Result<Self> {
        let unknown = || {
            FedError::UnsupportedLayer(format!(
                "`{path}` is not a linear layer of the language model"
            ))
        };
        if self.dense(path).is_none() {
            return Err(unknown());
        }
        let (stack, index, rest) = split_path(path).ok_or_else(unknown)?;
        match stack {
            Stack::Encoder => {
                if index >= self.encoder.layers.len() {
                    return Err(unknown());
                }
                let layer = self.encoder.layers.remove(index);
                let layer = map_encoder_layer(layer, rest, f)?.ok_or_else(unknown)?;
                self.encoder.layers.insert(index, layer);
            }
            Stack::Decoder => {
                if index >= self.decoder.layers.len() {
                    return Err(unknown());
                }
                let layer = self.decoder.layers.remove(index);
                let layer = map_decoder_layer(layer, rest, f)?.ok_or_else(unknown)?;
                self.decoder.layers.insert(index, layer);
            }
        }
        Ok(self)
    }
}

enum Stack {
    Encoder,
    Decoder,
}

fn split_path(path: &str) -> Option<(Stack, usize, Vec<&str>)> {
    let mut parts = path.split('.');
    let stack = match parts.next()? {
        "encoder" => Stack::Encoder,
        "decoder" => Stack::Decoder,
        _ => return None,
    };
    if parts.next()? != "layers" {
        return None;
    }
    let index = parts.next()?.parse().ok()?;
    Some((stack, index, parts.collect()))
}

fn projection<'a, B: Backend>(attn: &'a BartAttention<B>, name: &str) -> Option<&'a Dense<B>> {
    match name {
        "q_proj" => Some(&attn.q_proj),
        "k_proj" => Some(&attn.k_proj),
        "v_proj" => Some(&attn.v_proj),
        "out_proj" => Some(&attn.out_proj),
        _ => None,
    }
}

/// `Ok(None)` when `name` is not a projection (`f` is not called).
fn map_projection<B: Backend>(
    mut attn: BartAttention<B>,
    name: &str,
    f: impl FnOnce(Dense<B>) -> Result<Dense<B>>,
) -> Result<Option<BartAttention<B>>> {
    match name {
        "q_proj" => attn.q_proj = f(attn.q_proj)?,
        "k_proj" => attn.k_proj = f(attn.k_proj)?,
        "v_proj" => attn.v_proj = f(attn.v_proj)?,
        "out_proj" => attn.out_proj = f(attn.out_proj)?,
        _ => return Ok(None),
    }
    Ok(Some(attn))
}

fn map_encoder_layer<B: Backend>(
    mut layer: BartEncoderLayer<B>,
    rest: Vec<&str>,
    f: impl FnOnce(Dense<B>) -> Result<Dense<B>>,
) -> Result<Option<BartEncoderLayer<B>>> {
    match rest.as_slice() {
        ["self_attn", p] => match map_projection(layer.self_attn, p, f)? {
            Some(attn) => layer.self_attn = attn,
            None => return Ok(None),
        },
        ["fc1"] => layer.fc1 = f(layer.fc1)?,
        ["fc2"] => layer.fc2 = f(layer.fc2)?,
        _ => return Ok(None),
    }
    Ok(Some(layer))
}

fn map_decoder_layer<B: Backend>(
    mut layer: BartDecoderLayer<B>,
    rest: Vec<&str>,
    f: impl FnOnce(Dense<B>) -> Result<Dense<B>>,
) -> Result<Option<BartDecoderLayer<B>>> {
    match rest.as_slice() {
        ["self_attn", p] => match map_projection(layer.self_attn, p, f)? {
            Some(attn) => layer.self_attn = attn,
            None => return Ok(None),
        },
        ["encoder_attn", p] => match map_projection(layer.encoder_attn, p, f)? {
            Some(attn) => layer.encoder_attn = attn,
            None => return Ok(None),
        },
        ["fc1"] => layer.fc1 = f(layer.fc1)?,
        ["fc2"] => layer.fc2 = f(layer.fc2)?,
        _ => return Ok(None),
    }
    Ok(Some(layer))
}

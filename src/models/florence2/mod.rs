//! Florence-2 (Xiao et al., 2024) in burn: the DaViT vision encoder, the projector into the
//! language model, and the BART encoder-decoder, loadable from Microsoft's published checkpoints
//! and from transformers' converted ones.

pub mod bart;
pub mod generate;

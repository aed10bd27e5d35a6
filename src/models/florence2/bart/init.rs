//! Seeded random initialisation of a BART built from scratch, as transformers initialises it
//! (`init_std = 0.02`): linear weights and embeddings `N(0, 0.02^2)`, zero biases, LayerNorm
//! weight 1 and bias 0.
//!
//! Parameters are lazy: a tensor's values are drawn (on the host, from its own ChaCha8 stream,
//! so a seed gives the same model on every backend) only when first used. Loading a checkpoint
//! replaces them without drawing anything, which matters for the 140M-770M parameters of the
//! real models.

use burn::module::{Param, ParamId};
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{SeedableRng, rngs::ChaCha8Rng};
use rand_distr::{Distribution, StandardNormal};

/// transformers' `BartConfig.init_std`.
const INIT_STD: f64 = 0.02;

/// Hands out one seed per tensor, in construction order.
pub(crate) struct Init {
    seed: u64,
    next: u64,
}

impl Init {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed, next: 0 }
    }

    /// SplitMix64 of `seed + (index + 1) * golden`: independent streams per tensor.
    fn next_seed(&mut self) -> u64 {
        let mut z = self.seed.wrapping_add(
            self.next
                .wrapping_add(1)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        self.next += 1;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A lazily drawn `N(0, INIT_STD^2)` parameter.
    fn normal<B: Backend, const D: usize>(
        &mut self,
        shape: [usize; D],
        device: &B::Device,
    ) -> Param<Tensor<B, D>> {
        let seed = self.next_seed();
        Param::uninitialized(
            ParamId::new(),
            move |device, require_grad| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let n = shape.iter().product();
                let values: Vec<f32> = (0..n)
                    .map(|_| {
                        let x: f64 = StandardNormal.sample(&mut rng);
                        (x * INIT_STD) as f32
                    })
                    .collect();
                let tensor = Tensor::from_data(TensorData::new(values, shape), device);
                if require_grad {
                    tensor.require_grad()
                } else {
                    tensor
                }
            },
            device.clone(),
            true,
            shape.into(),
        )
    }

    /// A linear layer `d_in -> d_out` with bias (burn layout: weight `[in, out]`).
    pub(crate) fn linear<B: Backend>(
        &mut self,
        d_in: usize,
        d_out: usize,
        device: &B::Device,
    ) -> Linear<B> {
        Linear {
            weight: self.normal([d_in, d_out], device),
            bias: Some(Param::uninitialized(
                ParamId::new(),
                move |device, require_grad| {
                    let tensor = Tensor::zeros([d_out], device);
                    if require_grad {
                        tensor.require_grad()
                    } else {
                        tensor
                    }
                },
                device.clone(),
                true,
                [d_out].into(),
            )),
        }
    }

    /// An embedding table of `rows` vectors of width `d`.
    pub(crate) fn embedding<B: Backend>(
        &mut self,
        rows: usize,
        d: usize,
        device: &B::Device,
    ) -> Embedding<B> {
        Embedding {
            weight: self.normal([rows, d], device),
        }
    }
}

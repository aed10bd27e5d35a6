//! Florence-2 with its weights cast to f16 / bf16 (`models::cast_floats`): the same forward
//! pass (padding masks, the decoder prefix, generation) in half precision, within that
//! precision's rounding of the f32 result.

mod common;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use common::florence2_fixtures;
use fedvlm::models::florence2::{Florence2, GenerationConfig};
use fedvlm::models::{Precision, cast_floats};

type B = Flex;

fn model() -> Florence2<B> {
    Florence2::load(
        florence2_fixtures().join("tiny_native"),
        &Default::default(),
    )
    .unwrap()
}

struct Inputs {
    pixels: Tensor<B, 4>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Int>,
    decoder: Tensor<B, 2, Int>,
}

fn inputs() -> Inputs {
    let device = Default::default();
    B::seed(&device, 11);
    Inputs {
        pixels: Tensor::random([2, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        // The second prompt is padded: the mask path runs in half precision too.
        ids: Tensor::from_data([[0i64, 5, 6, 7, 8, 2], [0, 9, 10, 2, 1, 1]], &device),
        mask: Tensor::from_data([[1i64, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], &device),
        decoder: Tensor::from_data([[2i64, 0, 9, 10, 11], [2, 0, 12, 13, 14]], &device),
    }
}

/// Teacher-forced logits of `model` on `x`, with the prompt padding mask.
fn logits(model: &Florence2<B>, x: &Inputs) -> Tensor<B, 3> {
    model
        .forward_masked(
            x.pixels.clone(),
            x.ids.clone(),
            Some(x.mask.clone()),
            x.decoder.clone(),
        )
        .unwrap()
}

/// Largest difference relative to the largest magnitude of `exact`.
fn relative_gap<const D: usize>(exact: Tensor<B, D>, half: Tensor<B, D>) -> f32 {
    let half = half.cast(burn::tensor::FloatDType::F32);
    let scale: f32 = exact.clone().abs().max().into_scalar();
    let diff: f32 = (exact - half).abs().max().into_scalar();
    diff / scale
}

/// Bounds on the relative gap: a few units of each type's rounding (2^-11 for f16, 2^-8 for
/// bf16) accumulated over the tiny model's layers, and a floor showing the cast happened.
fn bounds(precision: Precision) -> (f32, f32) {
    match precision {
        Precision::F16 => (1e-5, 2e-2),
        Precision::Bf16 => (1e-4, 1e-1),
        Precision::F32 => unreachable!(),
    }
}

#[test]
fn half_precision_forward_stays_within_its_rounding_of_f32() {
    let exact_model = model();
    let x = inputs();
    let exact = logits(&exact_model, &x);
    for precision in [Precision::F16, Precision::Bf16] {
        // Inputs stay f32: the model casts the images to its weights' type.
        let half = logits(&cast_floats(exact_model.clone(), precision), &x);
        assert_eq!(half.dtype(), DType::from(precision.dtype()));
        let gap = relative_gap(exact.clone(), half);
        let (floor, ceiling) = bounds(precision);
        assert!(gap > floor && gap < ceiling, "{precision}: {gap}");
    }
}

#[test]
fn half_precision_prefix_and_generation_run() {
    let exact_model = model();
    let x = inputs();
    let prefix = |m: &Florence2<B>| {
        let encoded = m
            .encode(x.pixels.clone(), x.ids.clone(), Some(x.mask.clone()))
            .unwrap();
        m.language_model
            .decode_prefix(x.decoder.clone(), encoded.hidden, encoded.mask, None)
            .unwrap()
    };
    let exact = prefix(&exact_model);
    let config = GenerationConfig {
        max_new_tokens: 6,
        num_beams: 2,
        ..GenerationConfig::default()
    };
    let generated = exact_model
        .generate_masked(
            x.pixels.clone(),
            x.ids.clone(),
            Some(x.mask.clone()),
            &config,
        )
        .unwrap();
    for precision in [Precision::F16, Precision::Bf16] {
        let half_model = cast_floats(exact_model.clone(), precision);
        let gap = relative_gap(exact.clone(), prefix(&half_model));
        let (floor, ceiling) = bounds(precision);
        assert!(gap > floor && gap < ceiling, "{precision}: {gap}");
        let half = half_model
            .generate_masked(
                x.pixels.clone(),
                x.ids.clone(),
                Some(x.mask.clone()),
                &config,
            )
            .unwrap();
        assert_eq!(half.len(), generated.len());
        assert!(half.iter().all(|row| !row.is_empty() && row.len() <= 7));
    }
}

#[test]
fn precision_names_parse() {
    for p in [Precision::F32, Precision::F16, Precision::Bf16] {
        assert_eq!(p.name().parse::<Precision>().unwrap(), p);
    }
    assert_eq!("BFloat16".parse::<Precision>().unwrap(), Precision::Bf16);
    assert!("f8".parse::<Precision>().unwrap_err().contains("f8"));
    // Casting to the type a model already has changes nothing.
    let m = model();
    let x = inputs();
    let a = m
        .forward(x.pixels.clone(), x.ids.clone(), x.decoder.clone())
        .unwrap();
    let b = cast_floats(m, Precision::F32)
        .forward(x.pixels, x.ids, x.decoder)
        .unwrap();
    a.into_data().assert_eq(&b.into_data(), true);
}

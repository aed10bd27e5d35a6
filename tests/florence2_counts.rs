//! Parameter counts of the Florence-2 presets as built, against transformers' native
//! `Florence2ForConditionalGeneration` with Microsoft's vocabulary (51,289 tokens), counted by
//! `scripts/time_florence2_reference.py` (base) and the same build with large's sizes:
//!
//! | model | vision_tower | multi_modal_projector | language_model | total |
//! |---|---|---|---|---|
//! | base  |  90,368,000 |   839,168 | 140,206,848 | 231,414,016 |
//! | large | 360,632,320 | 2,201,600 | 407,340,032 | 770,173,952 |
//!
//! Counted from the parameters' shapes: the lazily initialised weights are never drawn, so the
//! test is cheap even for large.

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use fedvlm::models::florence2::{Florence2, Florence2Config};

type B = Flex;

/// Parameters of `module`, from shapes alone.
fn count<M: Module<B>>(module: &M) -> usize {
    struct Counter(usize);
    impl ModuleVisitor<B> for Counter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 += param.lazy_shape().num_elements();
        }
    }
    let mut counter = Counter(0);
    module.visit(&mut counter);
    counter.0
}

fn counts(config: &Florence2Config) -> [usize; 4] {
    let model = Florence2::<B>::new(config, 0, &Default::default()).expect("preset config");
    [
        count(&model.vision_tower),
        count(&model.multi_modal_projector),
        count(&model.language_model),
        count(&model),
    ]
}

#[test]
fn base_has_transformers_parameter_count() {
    assert_eq!(
        counts(&Florence2Config::base()),
        [90_368_000, 839_168, 140_206_848, 231_414_016]
    );
}

#[test]
fn large_has_transformers_parameter_count() {
    assert_eq!(
        counts(&Florence2Config::large()),
        [360_632_320, 2_201_600, 407_340_032, 770_173_952]
    );
}

//! `load_peft_adapter` on arbitrary bytes: the first byte picks which file of the fixture
//! adapter (`tests/fixtures/florence2/peft/adapter`) the rest replaces, the weights (even) or
//! `adapter_config.json` (odd); the module is the toy of `tests/peft_format/main.rs`.
#![no_main]

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::Backend;
use fedvlm::lora::{Dense, freeze_all, load_peft_adapter};
use fedvlm::{LoraConfig, Sharing};
use libfuzzer_sys::fuzz_target;

type B = Autodiff<Flex>;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/florence2/peft/adapter"
);

#[derive(Module, Debug)]
struct SelfAttn<B: Backend> {
    q_proj: Dense<B>,
    k_proj: Linear<B>,
    v_proj: Dense<B>,
}

#[derive(Module, Debug)]
struct DecoderLayer<B: Backend> {
    self_attn: SelfAttn<B>,
}

#[derive(Module, Debug)]
struct Decoder<B: Backend> {
    layers: Vec<DecoderLayer<B>>,
}

#[derive(Module, Debug)]
struct Bart<B: Backend> {
    decoder: Decoder<B>,
}

fn bart(lora: &LoraConfig) -> Bart<B> {
    let device = Default::default();
    let dense = || Dense::Plain(LinearConfig::new(32, 32).init::<B>(&device));
    let layers = (0..2)
        .map(|n| {
            let mut attn = SelfAttn {
                q_proj: dense(),
                k_proj: LinearConfig::new(32, 32).init(&device),
                v_proj: dense(),
            };
            if n == 1 {
                attn.q_proj = attn.q_proj.adapt(lora, 3, "q_proj").expect("adapt");
                attn.v_proj = attn.v_proj.adapt(lora, 4, "v_proj").expect("adapt");
            }
            DecoderLayer { self_attn: attn }
        })
        .collect();
    let model = Bart {
        decoder: Decoder { layers },
    };
    freeze_all(model, Sharing::PLora)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(Path::new(FIXTURE).join(file), dir.path().join(file)).expect("fixture");
    }
    let target = if which % 2 == 0 {
        "adapter_model.safetensors"
    } else {
        "adapter_config.json"
    };
    std::fs::write(dir.path().join(target), rest).expect("write");
    let lora = LoraConfig::new(4, 8.0);
    let _ = load_peft_adapter(&bart(&lora), dir.path(), "model.language_model.", &lora);
});

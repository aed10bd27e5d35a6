//! Times the Florence-2 VQA experiment's cached training round: sequential clients against
//! cohort-batched ones. Random weights and synthetic samples (the round's cost does not depend
//! on the values); the paper's adapters (LoRA r4, alpha 8, dropout 0.1 on the last decoder
//! layer's self-attention `q_proj` and `v_proj`), pLoRA, FedAvg, AdamW.
//!
//! * `--size tiny`: the bundled tiny random Florence-2 (d_model 32, vocabulary 1,728).
//! * `--size mid`: the tiny vision tower with Florence-2-base's language-model widths (d_model
//!   768, 12 heads, ffn 3,072, vocabulary 51,289, base dropouts 0.1) and 1 encoder / 2 decoder
//!   layers: the cached step is then Florence-2-base's (it runs only the last decoder layer and
//!   the head), with encoder outputs of 64 px images (17 image tokens instead of 577).
//!
//! ```text
//! cargo run --release --example time_vqa_round -- --size mid --clients 8 --cohort off,2,4,8
//! ```
//!
//! Prints one JSON line per setting: the training seconds of a round (the sum of the clients'
//! training seconds) and the whole round's seconds, the mean of `--rounds` rounds after one
//! warm-up round.

use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::experiments::vqa::{
    CacheConfig, CacheDtype, FrozenPrefixCache, VqaSample, VqaSplit, VqaTask,
};
use fedvlm::federated::{CohortMode, ShareSpec};
use fedvlm::lora::freeze_all;
use fedvlm::models::Precision;
use fedvlm::models::florence2::{Florence2, Florence2Config};
use fedvlm::{FedAvg, FedError, LoraConfig, Sharing, Simulation, SimulationConfig};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type B = Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda")]
type B = Autodiff<burn::backend::Cuda>;

const TINY_CONFIG: &str = include_str!("../src/models/florence2/tiny/config.json");
const IMAGE: usize = 64;

#[derive(Parser)]
struct Args {
    /// `tiny` or `mid` (see the example's documentation).
    #[arg(long, default_value = "mid")]
    size: String,
    /// Clients (all train every round).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Training samples per client.
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Batch size.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Cohort settings to time (`off`, `auto` or a size).
    #[arg(long, value_delimiter = ',', default_value = "off,auto")]
    cohort: Vec<String>,
    /// Rounds timed per setting (after one warm-up round).
    #[arg(long, default_value_t = 1)]
    rounds: u64,
}

fn config(size: &str) -> Result<Florence2Config, FedError> {
    let (mut config, _) = Florence2Config::from_json(TINY_CONFIG)?;
    match size {
        "tiny" => {}
        "mid" => {
            let text = &mut config.text;
            text.d_model = 768;
            text.encoder_attention_heads = 12;
            text.decoder_attention_heads = 12;
            text.encoder_ffn_dim = 3072;
            text.decoder_ffn_dim = 3072;
            text.vocab_size = 51289;
            text.encoder_layers = 1;
            text.decoder_layers = 2;
            text.max_position_embeddings = 1024;
            text.dropout = 0.1;
            text.attention_dropout = 0.1;
            text.activation_dropout = 0.1;
            config.vision.projection_dim = 768;
        }
        other => return Err(FedError::config("size", format!("`{other}`: tiny or mid"))),
    }
    config.validate()?;
    Ok(config)
}

/// Random images and ids (prompts 4..16 tokens, answers 3..16).
fn samples(n: usize, vocab: usize, seed: u64) -> Result<Vec<VqaSample>, FedError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let pixels = (0..3 * IMAGE * IMAGE)
                .map(|_| rng.random_range(-2.0f32..2.0))
                .collect();
            let (p, a) = (rng.random_range(4..16), rng.random_range(3..16));
            let mut ids = |len: usize| {
                let mut v = vec![0u32];
                v.extend((0..len - 2).map(|_| rng.random_range(3..vocab as u32)));
                v.push(2);
                v
            };
            let prompt = ids(p);
            let answer = ids(a);
            VqaSample::new(pixels, IMAGE, &prompt, &answer, 32, 32)
        })
        .collect()
}

fn main() -> Result<(), FedError> {
    let args = Args::parse();
    let device = Default::default();
    let config = config(&args.size)?;
    let vocab = config.text.vocab_size;
    let per = args.samples + 1;
    let all = samples(args.clients * per, vocab, 1)?;
    let split = VqaSplit {
        train: (0..args.clients)
            .map(|k| (k * per..k * per + args.samples).collect())
            .collect(),
        test: (0..args.clients)
            .map(|k| vec![k * per + args.samples])
            .collect(),
        global_test: Vec::new(),
    };
    let base: Florence2<B> = Florence2::new(&config, 7, &device)?;
    let model = |k: usize| -> Result<Florence2<B>, FedError> {
        let targets = base.default_adapter_targets();
        let model = base
            .clone()
            .with_adapters(&LoraConfig::paper(), &targets, 100 + k as u64)?;
        Ok(freeze_all(model, Sharing::PLora))
    };
    let t = Instant::now();
    let cache_config = CacheConfig {
        dtype: CacheDtype::F32,
        precision: Precision::F32,
        budget_bytes: usize::MAX,
        batch_size: 1,
        parallel: true,
    };
    let indices: Vec<usize> = (0..all.len()).collect();
    let cache = Arc::new(FrozenPrefixCache::build_from(
        &model(0)?,
        &all,
        &indices,
        &cache_config,
        &device,
    )?);
    eprintln!(
        "cache of {} samples: {:.1} s",
        all.len(),
        t.elapsed().as_secs_f64()
    );
    let all = Arc::new(all);
    for setting in &args.cohort {
        let cohort = CohortMode::parse(setting)?;
        let task = VqaTask::<B>::new(all.clone(), split.clone(), vocab, &device)?
            .with_cache(cache.clone())?;
        let models = (0..args.clients)
            .map(model)
            .collect::<Result<Vec<_>, _>>()?;
        let sim_config = SimulationConfig {
            rounds: args.rounds + 1,
            local_epochs: 1,
            batch_size: args.batch_size,
            eval_batch_size: 8,
            lr: 1e-4,
            seed: 3,
            progress: false,
            evaluate_initial: false,
            cohort,
            ..SimulationConfig::default()
        };
        let spec = ShareSpec::new(Sharing::PLora);
        let mut sim = Simulation::new(sim_config, spec, task, FedAvg::new(), models)?;
        sim.run_one_round()?;
        let (mut train, mut round) = (0.0, 0.0);
        for _ in 0..args.rounds {
            let t = Instant::now();
            let report = sim.run_one_round()?;
            round += t.elapsed().as_secs_f64();
            train += report.clients.iter().map(|c| c.seconds).sum::<f64>();
        }
        let n = args.rounds.max(1) as f64;
        println!(
            "{{\"size\":\"{}\",\"clients\":{},\"samples\":{},\"batch\":{},\"cohort\":\"{setting}\",\
             \"train_s\":{:.3},\"round_s\":{:.3},\"rounds\":{}}}",
            args.size,
            args.clients,
            args.samples,
            args.batch_size,
            train / n,
            round / n,
            args.rounds
        );
    }
    Ok(())
}

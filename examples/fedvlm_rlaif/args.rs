//! The RLAIF-V experiment's flags, and the model, data and cache they ask for: shared by this
//! example and by `flower_node --task rlaif`.

#[path = "../common/robustness.rs"]
pub mod robustness;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::data::{RLAIF_V_REPO, RlaifV, RlaifVOptions, RlaifVShards};
use fedvlm::experiments::rlaif::{
    AnswerEvalConfig, RlaifConfig, RlaifData, RunInputs, build_cache, freeze_base,
};
use fedvlm::experiments::vqa::{CacheConfig, FrozenPrefixCache};
use fedvlm::models::florence2::processor::Florence2Processor;
use fedvlm::models::florence2::{Florence2, Florence2Pipeline, GenerationConfig};
use fedvlm::strategy::StrategyKind;
use robustness::RobustnessArgs;

/// Samples per forward pass while the cache is built: 1 on the CPU (fresh multi-megabyte
/// activation buffers of bigger batches cost more in page faults than batching saves).
#[cfg(not(feature = "cuda"))]
const DEFAULT_CACHE_BATCH: usize = 1;
#[cfg(feature = "cuda")]
const DEFAULT_CACHE_BATCH: usize = 16;

/// Any error, printed for the user.
pub type AnyError = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(
    about = "Federated pLoRA fine-tuning of Florence-2 on RLAIF-V (the FedVLM paper's Tables 3-4, Figures 2, 3, 5)"
)]
pub struct Args {
    /// Folder holding the RLAIF-V shards (`RLAIF-V-Dataset_*.parquet`); by default they are
    /// read from (or downloaded into) the Hugging Face cache.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Florence-2 checkpoint: a hub id or a local folder.
    #[arg(long, default_value = "microsoft/Florence-2-base")]
    pub model: String,
    /// One sharing rule (plora, fedavg-lora, ffa-lora, fedsa-lora); overrides --compare.
    #[arg(long)]
    pub sharing: Option<Sharing>,
    /// Rules to run one after another on the same split.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plora,fedavg-lora,ffa-lora"
    )]
    pub compare: Vec<Sharing>,
    /// Server strategy: fedavg, fedprox, fedavgm, fedadagrad, fedadam, fedyogi, fedmedian,
    /// fedtrimmedavg, krum, multikrum or bulyan (Flower 1.42's math and defaults).
    #[arg(long)]
    pub strategy: Option<StrategyKind>,
    /// FedProx's mu.
    #[arg(long)]
    pub mu: Option<f64>,
    /// Number of clients (source datasets are grouped into this many; or IID shares).
    #[arg(long)]
    pub clients: Option<usize>,
    /// Deal samples uniformly at random instead of by source dataset.
    #[arg(long)]
    pub iid: bool,
    /// Centralised training: one trainer with all clients' data, the same budget.
    #[arg(long)]
    pub centralized: bool,
    /// Federated rounds.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Local epochs per round.
    #[arg(long)]
    pub local_epochs: Option<usize>,
    /// Local learning rate (AdamW).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Gradient accumulation: run each batch as micro-batches of this many samples (same
    /// step, less memory; on the CPU without the cache, 1 is also faster).
    #[arg(long)]
    pub micro_batch_size: Option<usize>,
    /// Evaluation batch size.
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Adapter rank (FFA-LoRA keeps its own rank 8 unless --ffa-rank is given).
    #[arg(long)]
    pub rank: Option<usize>,
    /// Adapter alpha (FFA-LoRA keeps its own alpha 8 unless --ffa-alpha is given).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// FFA-LoRA's adapter rank.
    #[arg(long)]
    pub ffa_rank: Option<usize>,
    /// FFA-LoRA's adapter alpha.
    #[arg(long)]
    pub ffa_alpha: Option<f64>,
    /// Adapter dropout (every rule).
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Seed of the split, the adapters, shuffling and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep at most this many samples per client (quick runs).
    #[arg(long)]
    pub max_samples_per_client: Option<usize>,
    /// Fraction of each client's samples held out for testing.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Longest prompt in tokens.
    #[arg(long)]
    pub max_prompt_len: Option<usize>,
    /// Longest answer in tokens.
    #[arg(long)]
    pub max_answer_len: Option<usize>,
    /// Generated answers written per client after the last round.
    #[arg(long)]
    pub answers_per_client: Option<usize>,
    /// Beams when generating answers (1: greedy), for the answer-level metrics and the answers
    /// written after the last round.
    #[arg(long, default_value_t = 1)]
    pub num_beams: usize,
    /// Score generated answers (exact match, token F1, VQA accuracy) on only each client's
    /// first N test samples (default: all).
    #[arg(long)]
    pub answer_eval_limit: Option<usize>,
    /// Score generated answers before fine-tuning and every K rounds (and after the last);
    /// 0 turns the answer-level metrics off.
    #[arg(long, default_value_t = 1)]
    pub answer_eval_every: u64,
    /// Run the whole model every step instead of the frozen-prefix cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Precision the frozen prefix runs in while the cache is built: f32, f16 or bf16 (half
    /// precision is for GPUs; adapters always train in f32).
    #[arg(long)]
    pub prefix_precision: Option<fedvlm::models::Precision>,
    /// Samples per forward pass while the frozen-prefix cache is built (CPU default 1: on
    /// burn's CPU backend big batches cost more per sample, see BENCHMARKS.md; CUDA 16).
    #[arg(long, default_value_t = DEFAULT_CACHE_BATCH)]
    pub cache_batch_size: usize,
    /// Memory budget of the frozen-prefix cache in MiB (samples beyond it are recomputed).
    #[arg(long, default_value_t = 4096)]
    pub cache_mib: usize,
    /// Abort on a malformed RLAIF-V row instead of skipping and counting it.
    #[arg(long)]
    pub strict: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/rlaif")]
    pub out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    pub resume: bool,
    /// A preset that finishes in a few minutes on a CPU: 2 clients x 12 samples, 2 rounds of
    /// 1 epoch (flags still override it).
    #[arg(long)]
    pub quick: bool,
    /// Failing clients and differential privacy.
    #[command(flatten)]
    pub robustness: RobustnessArgs,
}

impl Args {
    pub fn config(&self) -> RlaifConfig {
        let mut c = if self.quick {
            RlaifConfig::quick()
        } else {
            RlaifConfig::default()
        };
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { c.$field = v; })* };
        }
        set!(
            clients,
            rounds,
            local_epochs,
            lr,
            batch_size,
            eval_batch_size,
            strategy,
            mu,
            seed
        );
        set!(
            test_fraction,
            max_prompt_len,
            max_answer_len,
            answers_per_client
        );
        if self.micro_batch_size.is_some() {
            c.micro_batch_size = self.micro_batch_size;
        }
        if self.max_samples_per_client.is_some() {
            c.max_samples_per_client = self.max_samples_per_client;
        }
        if let Some(rank) = self.rank {
            c.lora.rank = rank;
        }
        if let Some(alpha) = self.alpha {
            c.lora.alpha = alpha;
        }
        if let Some(rank) = self.ffa_rank {
            c.ffa_lora.rank = rank;
        }
        if let Some(alpha) = self.ffa_alpha {
            c.ffa_lora.alpha = alpha;
        }
        if let Some(dropout) = self.dropout {
            c.lora.dropout = dropout;
            c.ffa_lora.dropout = dropout;
        }
        c.answer_eval = AnswerEvalConfig {
            every: self.answer_eval_every,
            limit: self.answer_eval_limit,
            num_beams: self.num_beams,
        };
        c.iid = self.iid;
        c.centralized = self.centralized;
        c.cache = !self.no_cache;
        if let Some(precision) = self.prefix_precision {
            c.prefix_precision = precision;
        }
        self.robustness.apply(&mut c.failures, &mut c.dp);
        c
    }
}

/// The shards of `--data-dir`, or of the hub dataset (downloaded when online).
pub fn find_shards(args: &Args) -> Result<RlaifVShards, AnyError> {
    Ok(match &args.data_dir {
        Some(dir) => RlaifVShards::from_dir(dir).map_err(|e| {
            format!(
                "no RLAIF-V shards in --data-dir {}: {e} (expected RLAIF-V-Dataset_*.parquet)",
                dir.display()
            )
        })?,
        None => RlaifVShards::resolve(RLAIF_V_REPO).map_err(|e| {
            format!(
                "cannot get {RLAIF_V_REPO}: {e}\n(offline? download the parquet shards \
                 elsewhere and pass --data-dir FOLDER)"
            )
        })?,
    })
}

/// Reads the shards (only as many rows per source as the per-client cap can use).
pub fn load_data(
    args: &Args,
    shards: &RlaifVShards,
    config: &RlaifConfig,
) -> Result<RlaifV, AnyError> {
    let mut options = RlaifVOptions::new().strict(args.strict);
    if let Some(cap) = config.max_samples_per_client {
        // Enough rows of every source for any client grouping or IID share, drawn uniformly
        // at random (seeded) from each source rather than its first rows.
        options = options
            .max_samples_per_source(cap.saturating_mul(config.clients))
            .sample_seed(config.seed);
    }
    Ok(RlaifV::load_files(&shards.files, &options)?)
}

/// What [`Args::prepare`] loads: everything a run (or one node) needs besides the rule.
pub struct Prepared<B: AutodiffBackend> {
    /// The settings.
    pub config: RlaifConfig,
    /// The preprocessed samples and the trainers' split.
    pub data: Arc<RlaifData>,
    /// Florence-2 with every weight frozen.
    pub base: Florence2<B>,
    /// The processor (tokenizer, image preprocessing).
    pub processor: Florence2Processor,
    /// The checkpoint's generation settings.
    pub generation: GenerationConfig,
    /// The frozen-prefix cache, unless `--no-cache`.
    pub cache: Option<Arc<FrozenPrefixCache>>,
}

impl<B: AutodiffBackend> Prepared<B> {
    /// The inputs of `run_rule` / `federation`.
    pub fn inputs<'a>(
        &'a self,
        out_dir: Option<&'a std::path::Path>,
        resume: bool,
        progress: bool,
        device: B::Device,
    ) -> RunInputs<'a, B> {
        RunInputs {
            config: &self.config,
            data: self.data.clone(),
            base: &self.base,
            processor: &self.processor,
            cache: self.cache.clone(),
            generation: self.generation.clone(),
            out_dir,
            resume,
            progress,
            device,
        }
    }
}

impl Args {
    /// Loads the model and the data, splits the trainers and builds the frozen-prefix cache.
    pub fn prepare<B: AutodiffBackend>(&self, device: &B::Device) -> Result<Prepared<B>, AnyError> {
        let args = self;
        let config = self.config();
        config.validate()?;
        let device = device.clone();
        // Data files first: a missing folder fails before the (large) model is loaded.
        let shards = find_shards(args)?;
        let pipeline = Florence2Pipeline::<B>::from_pretrained(&args.model, &device).map_err(|e| {
            format!(
                "cannot load the model `{}`: {e}\n(offline? pass --model FOLDER holding config.json, \
                 model.safetensors, tokenizer.json and preprocessor_config.json)",
                args.model
            )
        })?;
        let generation = pipeline.generation_config();
        let (model, _, processor) = pipeline.into_parts();
        let base = freeze_base(model);

        let rows = load_data(args, &shards, &config)?;
        println!("{}", rows.summary());
        let t = Instant::now();
        let mut data = RlaifData::prepare(&config, &rows, &processor)?;
        drop(rows);
        println!(
            "{} samples preprocessed in {:.1} s; {} trainer(s): {}",
            data.samples.len(),
            t.elapsed().as_secs_f64(),
            data.num_trainers(),
            (0..data.num_trainers())
                .map(|k| format!(
                    "{k}: {} train / {} test ({})",
                    data.split.train[k].len(),
                    data.split.test[k].len(),
                    data.sources[k].join("+")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        println!(
            "{} rounds x {} local epochs, batch {}, lr {}",
            config.rounds, config.local_epochs, config.batch_size, config.lr,
        );

        let cache = if config.cache {
            let t = Instant::now();
            let cache_config = CacheConfig {
                budget_bytes: args.cache_mib << 20,
                precision: config.prefix_precision,
                batch_size: args.cache_batch_size,
                ..CacheConfig::default()
            };
            let cache = build_cache(&base.valid(), &data, &cache_config, &device)?;
            // Cached samples no longer need their pixels (except those that generate answers).
            let keep = config
                .answer_eval
                .test_samples_needed(config.answers_per_client);
            let freed = data.drop_cached_pixels(&cache, keep)?;
            println!(
                "frozen-prefix cache: {} of {} samples, {} MB, computed in {} in {:.1} s ({freed} images freed)",
                cache.len(),
                cache.num_samples(),
                cache.bytes() / 1_000_000,
                cache.precision(),
                t.elapsed().as_secs_f64()
            );
            Some(Arc::new(cache))
        } else {
            None
        };

        Ok(Prepared {
            config,
            data: Arc::new(data),
            base,
            processor,
            generation,
            cache,
        })
    }
}

//! The RLAIF-V experiment's flags, and the model, data and cache they ask for: shared by this
//! example and by `flower_node --task rlaif`.

#[path = "dataset.rs"]
pub mod dataset;
#[path = "../common/robustness.rs"]
pub mod robustness;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::data::{RLAIF_V_REPO, RlaifVShards};
use fedvlm::experiments::rlaif::{
    AnswerEvalConfig, RlaifConfig, RlaifData, RunInputs, VqaDataset, freeze_base,
};
use fedvlm::experiments::vqa::{CacheConfig, DiskCacheOptions, FrozenPrefixCache, ImageStore};
use fedvlm::models::florence2::processor::Florence2Processor;
use fedvlm::models::florence2::{Florence2, Florence2Pipeline, GenerationConfig, TINY_RANDOM};
use fedvlm::strategy::StrategyKind;
use robustness::RobustnessArgs;

/// Any error, printed for the user.
pub type AnyError = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(
    about = "Federated pLoRA fine-tuning of Florence-2 on RLAIF-V (the FedVLM paper's Tables 3-4, Figures 2, 3, 5)"
)]
pub struct Args {
    /// The dataset: rlaif-v (openbmb/RLAIF-V-Dataset) or okvqa (lmms-lab/OK-VQA, val2014;
    /// always IID clients, the target is the most common of the ten human answers).
    #[arg(long, default_value = "rlaif-v")]
    pub dataset: VqaDataset,
    /// Folder holding the dataset's parquet files (RLAIF-V: `RLAIF-V-Dataset_*.parquet`;
    /// OK-VQA: `val2014-*.parquet`, directly or under `data/`); by default they are read from
    /// (or downloaded into) the Hugging Face cache.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Florence-2 checkpoint: a hub id, a local folder, or `tiny-random` (a tiny random model
    /// with a bundled stand-in tokenizer, 64x64 images: offline smoke runs and memory checks).
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
    #[arg(long, alias = "centralised")]
    pub centralized: bool,
    /// Also train centrally (pLoRA, one trainer holding every client's samples, the same
    /// rounds and epochs) after the federated rules, on the same samples and cache: the
    /// paper's Figure 2 (centralised vs FedVLM) in one run and one chart.
    #[arg(long, alias = "vs-centralised", conflicts_with = "centralized")]
    pub vs_centralized: bool,
    /// The client ablation (Table 4): one federation per client count (e.g. 2,4,6,8), with
    /// --sharing (default plora), each in `<out>/clients-<n>/`, and the table in
    /// `<out>/clients_sweep.{md,csv}`. Non-IID by source for RLAIF-V unless --iid.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["centralized", "vs_centralized"])]
    pub clients_sweep: Vec<usize>,
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
    /// Cohort-batched training from the cache: `auto` (default), `off` or clients per cohort.
    #[arg(long, value_parser = |s: &str| fedvlm::federated::CohortMode::parse(s).map_err(|e| e.to_string()))]
    pub cohort_size: Option<fedvlm::federated::CohortMode>,
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
    /// Samples per forward pass while the frozen-prefix cache is built. Default: derived from
    /// free memory (MemAvailable on the CPU, the device's free memory on CUDA) and an
    /// estimate of one sample's peak activations, clamped to 1..=64; on the CPU at most 1
    /// (fastest per sample, BENCHMARKS.md) with batches in parallel on its threads when they
    /// fit; on a GPU one batch in flight (16 where free memory is unknown).
    #[arg(long)]
    pub cache_batch_size: Option<usize>,
    /// Memory budget in MiB of the frozen-prefix cache's shards held in RAM (every sample is
    /// cached on disk; least recently used shards are dropped first).
    #[arg(long, default_value_t = 4096)]
    pub cache_mib: usize,
    /// Folder of the on-disk frozen-prefix cache (and of the run's temporary image file);
    /// default `<out>/prefix-cache`. Reused by --resume and later runs while the model,
    /// precision, image processing and samples are the same; rebuilt (with a message)
    /// otherwise.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Seed of `--model tiny-random`'s weights.
    #[arg(long, default_value_t = 0)]
    pub model_seed: u64,
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
        if let Some(cohort) = self.cohort_size {
            c.cohort = cohort;
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
        c.iid = self.iid || self.dataset.iid_only();
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

/// The frozen model, its processor and generation settings.
pub struct Model<B: AutodiffBackend> {
    /// Florence-2 with every weight frozen.
    pub base: Florence2<B>,
    /// The processor (tokenizer, image preprocessing).
    pub processor: Florence2Processor,
    /// The checkpoint's generation settings.
    pub generation: GenerationConfig,
}

impl Args {
    /// The on-disk cache folder: `--cache-dir`, or `<out>/prefix-cache`.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.out.join("prefix-cache"))
    }

    /// Loads the model and the data, splits the trainers and builds the frozen-prefix cache.
    pub fn prepare<B: AutodiffBackend>(&self, device: &B::Device) -> Result<Prepared<B>, AnyError> {
        let config = self.config();
        config.validate()?;
        // Data files first: a missing folder fails before the (large) model is loaded.
        let files = dataset::find_files(self)?;
        let model = self.load_model::<B>(device)?;
        // Images go to a file beside the cache as they are read; a batch decodes its own.
        let store = Arc::new(ImageStore::temporary(self.cache_dir())?);
        let rows = dataset::load_rows(self, &files, &config, config.clients, &store)?;
        println!("{}", rows.summary());
        let data = self.prepare_data(&config, &rows, &model.processor)?;
        drop(rows);
        let cache = self.cache_for(&model.base, &config, &data, device, &self.cache_dir())?;
        Ok(Prepared {
            config,
            data: Arc::new(data),
            base: model.base,
            processor: model.processor,
            generation: model.generation,
            cache,
        })
    }

    /// Loads `--model` (or builds `tiny-random`), every weight frozen.
    pub fn load_model<B: AutodiffBackend>(&self, device: &B::Device) -> Result<Model<B>, AnyError> {
        let pipeline = if self.model == TINY_RANDOM {
            Florence2Pipeline::<B>::tiny_random(self.model_seed, device)?
        } else {
            Florence2Pipeline::<B>::from_pretrained(&self.model, device).map_err(|e| {
                format!(
                    "cannot load the model `{}`: {e}\n(offline? pass --model FOLDER holding \
                     config.json, model.safetensors, tokenizer.json and preprocessor_config.json, \
                     or --model {TINY_RANDOM})",
                    self.model
                )
            })?
        };
        let generation = pipeline.generation_config();
        let (model, _, processor) = pipeline.into_parts();
        Ok(Model {
            base: freeze_base(model),
            processor,
            generation,
        })
    }

    /// Splits the trainers and tokenises their samples (images stay encoded, where the read
    /// put them), with a log line.
    pub fn prepare_data(
        &self,
        config: &RlaifConfig,
        rows: &dataset::LoadedRows,
        processor: &Florence2Processor,
    ) -> Result<RlaifData, AnyError> {
        let t = Instant::now();
        let data = RlaifData::prepare(config, rows.rows(), processor)?;
        if data.skipped_task_token > 0 {
            println!(
                "skipped {} rows whose question holds a Florence-2 task token",
                data.skipped_task_token
            );
        }
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
        Ok(data)
    }

    /// The frozen-prefix cache of `data` in `dir` (unless `--no-cache`): built on disk, or
    /// reused from an earlier run with the same key (rebuilt with a message otherwise).
    pub fn cache_for<B: AutodiffBackend>(
        &self,
        base: &Florence2<B>,
        config: &RlaifConfig,
        data: &RlaifData,
        device: &B::Device,
        dir: &std::path::Path,
    ) -> Result<Option<Arc<FrozenPrefixCache>>, fedvlm::FedError> {
        if !config.cache {
            return Ok(None);
        }
        let t = Instant::now();
        let defaults = CacheConfig {
            budget_bytes: self.cache_mib << 20,
            precision: config.prefix_precision,
            ..CacheConfig::for_backend::<B>(device)
        };
        let (cache_config, why) = match self.cache_batch_size {
            Some(batch_size) => (
                CacheConfig {
                    batch_size,
                    ..defaults
                },
                "--cache-batch-size".to_string(),
            ),
            None => defaults.with_memory_batch(base, &data.samples, device)?,
        };
        println!(
            "frozen-prefix cache build: batch {}{} ({why})",
            cache_config.batch_size,
            if cache_config.parallel {
                ", batches in parallel"
            } else {
                ", one batch in flight"
            }
        );
        let options = DiskCacheOptions::new(dir);
        let (cache, stats) = FrozenPrefixCache::build_on_disk(
            &base.valid(),
            &data.samples,
            &cache_config,
            &options,
            device,
        )?;
        if let Some(reason) = &stats.rebuilt {
            println!(
                "frozen-prefix cache in {}: {reason}; rebuilt",
                dir.display()
            );
        }
        println!(
            "frozen-prefix cache: {} samples, {} MB on disk in {}, {} shards reused, {} built, \
             {} prefix forward passes, computed in {}, {:.1} s",
            cache.num_samples(),
            cache.bytes() / 1_000_000,
            dir.display(),
            stats.shards_reused,
            stats.shards_built,
            stats.forward_passes,
            cache.precision(),
            t.elapsed().as_secs_f64()
        );
        Ok(Some(Arc::new(cache)))
    }
}

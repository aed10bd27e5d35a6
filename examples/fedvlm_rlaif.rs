//! The paper's main experiment (Section 4): Florence-2 fine-tuned on RLAIF-V with pLoRA across
//! clients that each hold one or more source datasets (non-IID) or a random share (`--iid`),
//! compared with FedAvg-LoRA (FLoRA) and FFA-LoRA, or trained centrally (`--centralized`,
//! Figure 2).
//!
//! ```text
//! cargo run --release --example fedvlm_rlaif                   # the paper's settings, CPU
//! cargo run --release --example fedvlm_rlaif -- --quick        # a few minutes on a CPU
//! cargo run --release --example fedvlm_rlaif --features cuda   # on an NVIDIA GPU
//! ```
//!
//! The RLAIF-V shards come from `--data-dir` (a folder with `RLAIF-V-Dataset_*.parquet`) or
//! the hub dataset `openbmb/RLAIF-V-Dataset`; the model from `--model` (a hub id or a folder
//! with `config.json`, `model.safetensors`, `tokenizer.json`, `preprocessor_config.json`).
//! Offline (`HF_HUB_OFFLINE=1`) only local folders and the Hugging Face cache are read.
//! Writes `<out>/<run>/{metrics.jsonl, config.json, checkpoint/, answers.jsonl}` (`--resume`
//! continues from the checkpoints), `<out>/rounds.csv`, `<out>/accuracy.svg` (mean test
//! accuracy and loss per round, one line per run: Figures 3 and 5), and prints a table shaped
//! like Tables 3 and 4 (per client, before fine-tuning and after the last round).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use clap::Parser;
use fedvlm::Sharing;
use fedvlm::data::{RLAIF_V_REPO, RlaifV, RlaifVOptions, RlaifVShards};
use fedvlm::experiments::rlaif::{
    RlaifConfig, RlaifData, RuleRun, RunInputs, build_cache, freeze_base, run_rule,
};
use fedvlm::experiments::vqa::CacheConfig;
use fedvlm::federated::{LabelledRun, write_csv, write_svg_chart};
use fedvlm::metrics::ClassificationMetrics;
use fedvlm::models::florence2::Florence2Pipeline;
use fedvlm::strategy::StrategyKind;

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

/// Samples per forward pass while the cache is built: 1 on the CPU (fresh multi-megabyte
/// activation buffers of bigger batches cost more in page faults than batching saves).
#[cfg(not(feature = "cuda"))]
const DEFAULT_CACHE_BATCH: usize = 1;
#[cfg(feature = "cuda")]
const DEFAULT_CACHE_BATCH: usize = 16;

type AnyError = Box<dyn std::error::Error>;

#[derive(Parser, Debug)]
#[command(
    about = "Federated pLoRA fine-tuning of Florence-2 on RLAIF-V (the FedVLM paper's Tables 3-4, Figures 2, 3, 5)"
)]
struct Args {
    /// Folder holding the RLAIF-V shards (`RLAIF-V-Dataset_*.parquet`); by default they are
    /// read from (or downloaded into) the Hugging Face cache.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Florence-2 checkpoint: a hub id or a local folder.
    #[arg(long, default_value = "microsoft/Florence-2-base")]
    model: String,
    /// One sharing rule (plora, fedavg-lora, ffa-lora, fedsa-lora); overrides --compare.
    #[arg(long)]
    sharing: Option<Sharing>,
    /// Rules to run one after another on the same split.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plora,fedavg-lora,ffa-lora"
    )]
    compare: Vec<Sharing>,
    /// Server strategy: fedavg or fedprox.
    #[arg(long)]
    strategy: Option<StrategyKind>,
    /// FedProx's mu.
    #[arg(long)]
    mu: Option<f64>,
    /// Number of clients (source datasets are grouped into this many; or IID shares).
    #[arg(long)]
    clients: Option<usize>,
    /// Deal samples uniformly at random instead of by source dataset.
    #[arg(long)]
    iid: bool,
    /// Centralised training: one trainer with all clients' data, the same budget.
    #[arg(long)]
    centralized: bool,
    /// Federated rounds.
    #[arg(long)]
    rounds: Option<u64>,
    /// Local epochs per round.
    #[arg(long)]
    local_epochs: Option<usize>,
    /// Local learning rate (AdamW).
    #[arg(long)]
    lr: Option<f64>,
    /// Local batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Gradient accumulation: run each batch as micro-batches of this many samples (same
    /// step, less memory; on the CPU without the cache, 1 is also faster).
    #[arg(long)]
    micro_batch_size: Option<usize>,
    /// Evaluation batch size.
    #[arg(long)]
    eval_batch_size: Option<usize>,
    /// Adapter rank (FFA-LoRA keeps its own rank 8 unless --ffa-rank is given).
    #[arg(long)]
    rank: Option<usize>,
    /// Adapter alpha (FFA-LoRA keeps its own alpha 8 unless --ffa-alpha is given).
    #[arg(long)]
    alpha: Option<f64>,
    /// FFA-LoRA's adapter rank.
    #[arg(long)]
    ffa_rank: Option<usize>,
    /// FFA-LoRA's adapter alpha.
    #[arg(long)]
    ffa_alpha: Option<f64>,
    /// Adapter dropout (every rule).
    #[arg(long)]
    dropout: Option<f64>,
    /// Seed of the split, the adapters, shuffling and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// Keep at most this many samples per client (quick runs).
    #[arg(long)]
    max_samples_per_client: Option<usize>,
    /// Fraction of each client's samples held out for testing.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Longest prompt in tokens.
    #[arg(long)]
    max_prompt_len: Option<usize>,
    /// Longest answer in tokens.
    #[arg(long)]
    max_answer_len: Option<usize>,
    /// Generated answers written per client after the last round.
    #[arg(long)]
    answers_per_client: Option<usize>,
    /// Run the whole model every step instead of the frozen-prefix cache.
    #[arg(long)]
    no_cache: bool,
    /// Precision the frozen prefix runs in while the cache is built: f32, f16 or bf16 (half
    /// precision is for GPUs; adapters always train in f32).
    #[arg(long)]
    prefix_precision: Option<fedvlm::models::Precision>,
    /// Samples per forward pass while the frozen-prefix cache is built (CPU default 1: on
    /// burn's CPU backend big batches cost more per sample, see BENCHMARKS.md; CUDA 16).
    #[arg(long, default_value_t = DEFAULT_CACHE_BATCH)]
    cache_batch_size: usize,
    /// Memory budget of the frozen-prefix cache in MiB (samples beyond it are recomputed).
    #[arg(long, default_value_t = 4096)]
    cache_mib: usize,
    /// Abort on a malformed RLAIF-V row instead of skipping and counting it.
    #[arg(long)]
    strict: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/rlaif")]
    out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    resume: bool,
    /// A preset that finishes in a few minutes on a CPU: 2 clients x 12 samples, 2 rounds of
    /// 1 epoch (flags still override it).
    #[arg(long)]
    quick: bool,
}

impl Args {
    fn config(&self) -> RlaifConfig {
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
        c.iid = self.iid;
        c.centralized = self.centralized;
        c.cache = !self.no_cache;
        if let Some(precision) = self.prefix_precision {
            c.prefix_precision = precision;
        }
        c
    }
}

/// The shards of `--data-dir`, or of the hub dataset (downloaded when online).
fn find_shards(args: &Args) -> Result<RlaifVShards, AnyError> {
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
fn load_data(args: &Args, shards: &RlaifVShards, config: &RlaifConfig) -> Result<RlaifV, AnyError> {
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

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), AnyError> {
    let config = args.config();
    config.validate()?;
    let rules = match args.sharing {
        Some(rule) => vec![rule],
        None if config.centralized => vec![Sharing::PLora],
        None => args.compare.clone(),
    };
    let device = Default::default();
    let started = Instant::now();

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
        "{} rounds x {} local epochs, batch {}, lr {}, rules: {}",
        config.rounds,
        config.local_epochs,
        config.batch_size,
        config.lr,
        rules
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
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
        let freed = data.drop_cached_pixels(&cache, config.answers_per_client)?;
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

    let data = Arc::new(data);
    std::fs::create_dir_all(&args.out)?;
    let inputs = RunInputs {
        config: &config,
        data: data.clone(),
        base: &base,
        processor: &processor,
        cache,
        generation,
        out_dir: Some(&args.out),
        resume: args.resume,
        progress: true,
        device,
    };
    let mut runs = Vec::new();
    for &rule in &rules {
        let t = Instant::now();
        let run = run_rule(&inputs, rule)?;
        let rounds = run.reports.iter().filter(|r| r.round > 0).count().max(1);
        println!(
            "{}: {:.1} s ({:.2} s per round this session)",
            run.name,
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() / rounds as f64
        );
        runs.push(run);
    }

    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|r| LabelledRun {
            label: &r.name,
            reports: &r.reports,
        })
        .collect();
    write_csv(args.out.join("rounds.csv"), &labelled)?;
    write_svg_chart(
        args.out.join("accuracy.svg"),
        "RLAIF-V, Florence-2: mean per-client test accuracy and loss",
        &labelled,
    )?;
    print_table(&runs, &data);
    for run in &runs {
        if let Some(answer) = run.answers.first() {
            println!(
                "{} client {}: Q: {} | reference: {} | generated: {}",
                run.name, answer.client, answer.question, answer.reference, answer.generated
            );
        }
    }
    println!(
        "\nwrote {}/{{rounds.csv, accuracy.svg, <run>/metrics.jsonl, <run>/answers.jsonl}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Per run and client: token accuracy, precision, recall, F1 and loss on the client's test
/// split before fine-tuning (round 0, "w/o ft") and after the last round.
fn print_table(runs: &[RuleRun], data: &RlaifData) {
    println!(
        "\n{:<20} {:<24} {:>5} | {:>7} {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} {:>7}",
        "run",
        "client (sources)",
        "round",
        "acc w/o",
        "prec",
        "recall",
        "f1",
        "loss",
        "acc",
        "prec",
        "recall",
        "f1",
        "loss"
    );
    let cells = |m: Option<ClassificationMetrics>| match m {
        Some(m) => format!(
            "{:>7.4} {:>7.4} {:>7.4} {:>7.4} {:>7.4}",
            m.accuracy, m.precision, m.recall, m.f1, m.loss
        ),
        None => format!("{:>7} {:>7} {:>7} {:>7} {:>7}", "-", "-", "-", "-", "-"),
    };
    for run in runs {
        let (Some(first), Some(last)) = (
            run.reports.iter().find(|r| r.round == 0),
            run.reports.last(),
        ) else {
            continue;
        };
        for k in 0..data.num_trainers() {
            let before = first.clients.get(k).and_then(|c| c.test);
            let after = last.clients.get(k).and_then(|c| c.test);
            let mut label = format!("{k} ({})", data.sources[k].join("+"));
            label.truncate(24);
            println!(
                "{:<20} {:<24} {:>5} | {} | {}",
                run.name,
                label,
                last.round,
                cells(before),
                cells(after)
            );
        }
        println!(
            "{:<20} {:<24} {:>5} | {} | {}",
            run.name,
            "mean",
            last.round,
            cells(first.mean_test),
            cells(last.mean_test)
        );
    }
}

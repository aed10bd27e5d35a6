//! The paper's CIFAR-10 experiment (Figure 4): an ImageNet-pretrained MobileNetV3 fine-tuned
//! with pLoRA and with LoRA (FedAvg-LoRA) across 40 clients holding 2 label-sorted shards each,
//! 150 rounds of 3 local epochs.
//!
//! ```text
//! cargo run --release --example cifar10_mobilenet                  # the paper's settings
//! cargo run --release --example cifar10_mobilenet -- --quick       # a few minutes on a laptop
//! cargo run --release --example cifar10_mobilenet --features cuda  # on an NVIDIA GPU
//! ```
//!
//! CIFAR-10 (binary version) is downloaded into `--data-dir` and torchvision's ImageNet
//! weights into torch's hub cache when missing (`FEDVLM_OFFLINE=1` forbids it). Writes
//! `<out>/<rule>/metrics.jsonl`, a checkpoint after every round (`--resume` continues),
//! `<out>/rounds.csv`, `<out>/accuracy.svg`, and prints a final table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::data::{Cifar10, cache_dir};
use fedvlm::experiments::cifar10::{
    Cifar10Config, ClientSplit, RunInputs, StrategyKind, build_cache, load_backbone, run_rule,
    torchvision_weights,
};
use fedvlm::federated::{LabelledRun, WireDtype, write_csv, write_svg_chart};
use fedvlm::models::{AdapterTargets, MobileNetV3Arch};
use fedvlm::{FedError, Sharing};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type Inner = burn::backend::Flex;
#[cfg(feature = "cuda")]
type Inner = burn::backend::Cuda;
type B = Autodiff<Inner>;

#[derive(Parser, Debug)]
#[command(about = "pLoRA vs LoRA on CIFAR-10 with MobileNetV3 (the FedVLM paper's Figure 4)")]
struct Args {
    /// Folder holding (or receiving) `cifar-10-batches-bin`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// MobileNetV3 size.
    #[arg(long, value_parser = parse_arch)]
    arch: Option<MobileNetV3Arch>,
    /// Number of clients.
    #[arg(long)]
    clients: Option<usize>,
    /// Number of label-sorted shards (dealt evenly to the clients).
    #[arg(long)]
    shards: Option<usize>,
    /// Federated rounds.
    #[arg(long)]
    rounds: Option<u64>,
    /// Local epochs per round.
    #[arg(long)]
    local_epochs: Option<usize>,
    /// Fraction of clients sampled per round.
    #[arg(long)]
    fraction: Option<f64>,
    /// One sharing rule (plora, fedavg-lora, ffa-lora, fedsa-lora); overrides --compare.
    #[arg(long)]
    sharing: Option<Sharing>,
    /// Rules to run one after another on the same split.
    #[arg(long, value_delimiter = ',', default_value = "plora,fedavg-lora")]
    compare: Vec<Sharing>,
    /// Server strategy: fedavg or fedprox.
    #[arg(long)]
    strategy: Option<StrategyKind>,
    /// FedProx's mu.
    #[arg(long)]
    mu: Option<f64>,
    /// Adapter rank.
    #[arg(long)]
    rank: Option<usize>,
    /// Adapter alpha.
    #[arg(long)]
    alpha: Option<f64>,
    /// Adapter dropout.
    #[arg(long)]
    dropout: Option<f64>,
    /// Local learning rate (AdamW).
    #[arg(long)]
    lr: Option<f64>,
    /// Local batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed of everything random.
    #[arg(long)]
    seed: Option<u64>,
    /// Network input size (CIFAR's 32x32 images are resized).
    #[arg(long)]
    image_size: Option<usize>,
    /// Adapt every 1x1 convolution too (slower: no frozen-prefix cache).
    #[arg(long)]
    pointwise: bool,
    /// Random crop and flip while training (disables the cache).
    #[arg(long)]
    augment: bool,
    /// Run the whole network every step instead of the frozen-prefix cache.
    #[arg(long)]
    no_cache: bool,
    /// Precision on the wire: f32, f16 or bf16.
    #[arg(long)]
    wire_dtype: Option<WireDtype>,
    /// Score every client on the whole test set every N rounds (0: never).
    #[arg(long)]
    global_eval_every: Option<u64>,
    /// A torchvision state_dict (.pth); by default torchvision's ImageNet weights are fetched.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Start from random weights instead of ImageNet's (a from-scratch baseline; offline).
    #[arg(long)]
    random_init: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/cifar10")]
    out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    resume: bool,
    /// A preset that finishes in a few minutes on a laptop CPU (flags still override it).
    #[arg(long)]
    quick: bool,
}

fn parse_arch(s: &str) -> Result<MobileNetV3Arch, String> {
    match s {
        "small" => Ok(MobileNetV3Arch::Small),
        "large" => Ok(MobileNetV3Arch::Large),
        _ => Err(format!("unknown arch `{s}` (small or large)")),
    }
}

impl Args {
    fn config(&self) -> Cifar10Config {
        let mut c = if self.quick {
            Cifar10Config::quick()
        } else {
            Cifar10Config::default()
        };
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { c.$field = v; })* };
        }
        set!(
            arch,
            clients,
            shards,
            rounds,
            local_epochs,
            fraction,
            strategy,
            mu,
            lr
        );
        set!(batch_size, seed, image_size, wire_dtype, global_eval_every);
        if let Some(rank) = self.rank {
            c.lora.rank = rank;
        }
        if let Some(alpha) = self.alpha {
            c.lora.alpha = alpha;
        }
        if let Some(dropout) = self.dropout {
            c.lora.dropout = dropout;
        }
        if self.pointwise {
            c.targets = AdapterTargets::ClassifierAndPointwise;
        }
        c.augment = self.augment;
        c.cache = !self.no_cache;
        c
    }
}

fn main() -> Result<(), FedError> {
    let args = Args::parse();
    let config = args.config();
    config.validate()?;
    let rules = match args.sharing {
        Some(rule) => vec![rule],
        None => args.compare.clone(),
    };
    let device = Default::default();
    let started = Instant::now();

    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| cache_dir().join("cifar10"));
    let data = Arc::new(Cifar10::load_or_download(&data_dir, true)?);
    let weights = match (&args.weights, args.random_init) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => None,
        (None, false) => Some(torchvision_weights(config.arch, true)?),
    };
    let backbone = load_backbone::<B>(&config, weights.as_deref(), &device)?;
    let split = ClientSplit::new(
        &data,
        config.shards,
        config.clients,
        config.train_limit,
        config.test_limit,
        config.seed,
    )?;
    println!(
        "{} clients x {} shards, {} rounds x {} local epochs, {:?} MobileNetV3 at {}px, rules: {}",
        config.clients,
        config.shards / config.clients,
        config.rounds,
        config.local_epochs,
        config.arch,
        config.image_size,
        rules
            .iter()
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let cache = if config.uses_cache() {
        let t = Instant::now();
        let cache = build_cache(&config, &data, &backbone, true, &device)?;
        println!(
            "frozen-prefix cache: {} MB in {:.1} s",
            cache.bytes() / 1_000_000,
            t.elapsed().as_secs_f64()
        );
        Some(Arc::new(cache))
    } else {
        None
    };

    std::fs::create_dir_all(&args.out).map_err(|e| FedError::io(&args.out, e))?;
    let inputs = RunInputs {
        config: &config,
        data,
        split: &split,
        backbone: &backbone,
        cache,
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
            "{rule}: {:.1} s ({:.2} s per round this session)",
            t.elapsed().as_secs_f64(),
            t.elapsed().as_secs_f64() / rounds as f64
        );
        runs.push(run);
    }

    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|r| LabelledRun {
            label: r.sharing.name(),
            reports: &r.reports,
        })
        .collect();
    write_csv(args.out.join("rounds.csv"), &labelled)?;
    write_svg_chart(
        args.out.join("accuracy.svg"),
        "CIFAR-10, MobileNetV3: mean per-client test accuracy",
        &labelled,
    )?;

    println!(
        "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "rule", "acc w/o", "acc", "prec", "recall", "f1", "global"
    );
    for run in &runs {
        let first = run.reports.first().and_then(|r| r.mean_test);
        let last = run.reports.last();
        let m = last.and_then(|r| r.mean_test);
        let global = run
            .reports
            .iter()
            .rev()
            .find_map(|r| r.mean_global_test)
            .map_or(f64::NAN, |g| g.accuracy);
        let f = |v: Option<f64>| v.map_or(f64::NAN, |v| v);
        println!(
            "{:<12} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
            run.sharing.name(),
            f(first.map(|m| m.accuracy)),
            f(m.map(|m| m.accuracy)),
            f(m.map(|m| m.precision)),
            f(m.map(|m| m.recall)),
            f(m.map(|m| m.f1)),
            global
        );
    }
    println!(
        "\nwrote {}/{{rounds.csv, accuracy.svg, <rule>/metrics.jsonl}} in {:.1} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

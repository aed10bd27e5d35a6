//! The CIFAR-10 experiment's flags, and the data, weights, split and cache they ask for: shared
//! by this example and by `flower_node --task cifar10`.

#[path = "../common/robustness.rs"]
pub mod robustness;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use burn::prelude::Backend;
use clap::Parser;
use fedvlm::data::{Cifar10, cache_dir};
use fedvlm::experiments::cifar10::{
    Cifar10Config, ClientSplit, PrefixCache, RunInputs, StrategyKind, build_cache, load_backbone,
    torchvision_weights,
};
use fedvlm::federated::{CohortMode, WireDtype};
use fedvlm::models::{AdapterTargets, MobileNetV3, MobileNetV3Arch};
use fedvlm::{FedError, Sharing};
use robustness::RobustnessArgs;

#[derive(Parser, Debug)]
#[command(about = "pLoRA vs LoRA on CIFAR-10 with MobileNetV3 (the FedVLM paper's Figure 4)")]
pub struct Args {
    /// Folder holding (or receiving) `cifar-10-batches-bin`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// MobileNetV3 size.
    #[arg(long, value_parser = parse_arch)]
    pub arch: Option<MobileNetV3Arch>,
    /// Number of clients.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Number of label-sorted shards (dealt evenly to the clients).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Federated rounds.
    #[arg(long)]
    pub rounds: Option<u64>,
    /// Local epochs per round.
    #[arg(long)]
    pub local_epochs: Option<usize>,
    /// Fraction of clients sampled per round.
    #[arg(long)]
    pub fraction: Option<f64>,
    /// One sharing rule (plora, fedavg-lora, ffa-lora, fedsa-lora); overrides --compare.
    #[arg(long)]
    pub sharing: Option<Sharing>,
    /// Rules to run one after another on the same split.
    #[arg(long, value_delimiter = ',', default_value = "plora,fedavg-lora")]
    pub compare: Vec<Sharing>,
    /// Server strategy: fedavg, fedprox, fedavgm, fedadagrad, fedadam, fedyogi, fedmedian,
    /// fedtrimmedavg, krum, multikrum or bulyan (Flower 1.42's math and defaults).
    #[arg(long)]
    pub strategy: Option<StrategyKind>,
    /// FedProx's mu.
    #[arg(long)]
    pub mu: Option<f64>,
    /// Adapter rank.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Adapter alpha.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Adapter dropout.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Local learning rate (AdamW).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Local batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of everything random.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Network input size (CIFAR's 32x32 images are resized).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Adapt every 1x1 convolution too (slower: no frozen-prefix cache).
    #[arg(long)]
    pub pointwise: bool,
    /// Random crop and flip while training (disables the cache).
    #[arg(long)]
    pub augment: bool,
    /// Run the whole network every step instead of the frozen-prefix cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Precision on the wire: f32, f16 or bf16.
    #[arg(long)]
    pub wire_dtype: Option<WireDtype>,
    /// Score every client on the whole test set every N rounds (0: never).
    #[arg(long)]
    pub global_eval_every: Option<u64>,
    /// A torchvision state_dict (.pth); by default torchvision's ImageNet weights are fetched.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Start from random weights instead of ImageNet's (a from-scratch baseline; offline).
    #[arg(long)]
    pub random_init: bool,
    /// Output folder.
    #[arg(long, default_value = "runs/cifar10")]
    pub out: PathBuf,
    /// Continue from the checkpoints in --out.
    #[arg(long)]
    pub resume: bool,
    /// Cohort-batched training from the cache: `auto` (default: as many clients at once as
    /// memory allows), `off` (one client after the other) or a number of clients per cohort.
    #[arg(long, value_parser = parse_cohort)]
    pub cohort_size: Option<CohortMode>,
    /// Use only the first N training images (default: all 50,000; `--quick`: 10,000).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Use only the first N test images (default: all 10,000; `--quick`: 2,000).
    #[arg(long)]
    pub test_limit: Option<usize>,
    /// A preset that finishes in a few minutes on a laptop CPU (flags still override it).
    #[arg(long)]
    pub quick: bool,
    /// Failing clients and differential privacy.
    #[command(flatten)]
    pub robustness: RobustnessArgs,
}

fn parse_cohort(s: &str) -> Result<CohortMode, String> {
    CohortMode::parse(s).map_err(|e| e.to_string())
}

fn parse_arch(s: &str) -> Result<MobileNetV3Arch, String> {
    match s {
        "small" => Ok(MobileNetV3Arch::Small),
        "large" => Ok(MobileNetV3Arch::Large),
        _ => Err(format!("unknown arch `{s}` (small or large)")),
    }
}

impl Args {
    pub fn config(&self) -> Cifar10Config {
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
        if let Some(n) = self.train_limit {
            c.train_limit = Some(n);
        }
        if let Some(n) = self.test_limit {
            c.test_limit = Some(n);
        }
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
        if let Some(cohort) = self.cohort_size {
            c.cohort = cohort;
        }
        self.robustness.apply(&mut c.failures, &mut c.dp);
        c
    }
}

/// What [`Args::prepare`] loads: everything a run (or one node) needs besides the rule.
pub struct Prepared<B: Backend> {
    /// The settings.
    pub config: Cifar10Config,
    /// The data set.
    pub data: Arc<Cifar10>,
    /// The clients' split.
    pub split: ClientSplit,
    /// The frozen backbone with a 10-class head.
    pub backbone: MobileNetV3<B>,
    /// The frozen-prefix cache, when the settings use it.
    pub cache: Option<Arc<PrefixCache>>,
}

impl<B: Backend> Prepared<B> {
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
            split: &self.split,
            backbone: &self.backbone,
            cache: self.cache.clone(),
            out_dir,
            resume,
            progress,
            device,
        }
    }
}

impl Args {
    /// Loads (downloading when missing) CIFAR-10 and the weights, splits the clients and
    /// builds the frozen-prefix cache.
    pub fn prepare<B: Backend>(&self, device: &B::Device) -> Result<Prepared<B>, FedError> {
        let args = self;
        let config = self.config();
        config.validate()?;
        let device = device.clone();
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
            "{} clients x {} shards, {} rounds x {} local epochs, {:?} MobileNetV3 at {}px",
            config.clients,
            config.shards / config.clients,
            config.rounds,
            config.local_epochs,
            config.arch,
            config.image_size,
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

        Ok(Prepared {
            config,
            data,
            split,
            backbone,
            cache,
        })
    }
}

//! One run of the experiment per sharing rule: model building, reports, checkpoints, resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::cache::PrefixCache;
use super::clients::ClientSplit;
use super::config::Cifar10Config;
use super::task::CifarTask;
use crate::Simulation;
use crate::data::{Checksum, Cifar10, Downloader, ImageTransform, torch_hub_checkpoints_dir};
use crate::error::Result;
use crate::federated::{Federation, RoundReport, ShareSpec, run_in_dir};
use crate::lora::{Sharing, freeze_all};
use crate::models::{MobileNetV3, MobileNetV3Arch, MobileNetV3Config};
use crate::seed::mix_seed;

/// Path prefix of the new task head, trained and shared by FedAvg under every rule.
pub const HEAD: &str = "classifier.3";

/// torchvision's ImageNet checkpoint of `arch`: downloaded into torch's hub cache (where
/// PyTorch puts it, so a copy PyTorch already fetched is reused) and checked against the
/// SHA-256 prefix in its name.
pub fn torchvision_weights(arch: MobileNetV3Arch, progress: bool) -> Result<PathBuf> {
    let name = match arch {
        MobileNetV3Arch::Small => "mobilenet_v3_small-047dcff4.pth",
        MobileNetV3Arch::Large => "mobilenet_v3_large-8738ca79.pth",
    };
    let url = format!("https://download.pytorch.org/models/{name}");
    let checksum = Checksum::from_torch_hub_filename(name);
    let dest = torch_hub_checkpoints_dir().join(name);
    Ok(Downloader::from_env(progress).fetch(&url, &dest, checksum.as_ref())?)
}

/// The MobileNetV3 with a 10-class head: loaded from a torchvision checkpoint, or randomly
/// initialised from the seed when `weights` is `None` (tests, or a from-scratch baseline).
///
/// Every parameter comes back frozen ([`build_client_models`] makes each client's adapters and
/// head trainable). This matters for speed, not only for correctness: on an autodiff backend
/// every trainable tensor alive anywhere in the process is scanned by burn at each backward
/// pass, so a trainable backbone kept alive beside the clients made each training step of the
/// cached experiment about 10 times slower.
pub fn load_backbone<B: Backend>(
    config: &Cifar10Config,
    weights: Option<&Path>,
    device: &B::Device,
) -> Result<MobileNetV3<B>> {
    let model_config = match config.arch {
        MobileNetV3Arch::Small => MobileNetV3Config::small(10),
        MobileNetV3Arch::Large => MobileNetV3Config::large(10),
    }
    .with_width_mult(config.width_mult)
    .with_seed(config.seed);
    let model = match weights {
        Some(path) => MobileNetV3::load_torchvision(path, &model_config, device)?,
        None => MobileNetV3::new(&model_config, device),
    };
    // No adapters yet, so the rule is irrelevant: everything is frozen.
    Ok(freeze_all(model, Sharing::PLora))
}

/// One model per client: the shared backbone (copies share its buffers) with the client's own
/// adapters (seeded by client) and everything but the adapters and the head frozen.
pub fn build_client_models<B: Backend>(
    backbone: &MobileNetV3<B>,
    config: &Cifar10Config,
) -> Result<Vec<MobileNetV3<B>>> {
    (0..config.clients)
        .map(|k| {
            let seed = mix_seed(&[config.seed, k as u64, 5]);
            Ok(backbone
                .clone()
                .with_adapters(&config.lora, config.targets, seed)?
                .freeze_backbone())
        })
        .collect()
}

/// What one sharing rule produced.
#[derive(Debug, Clone)]
pub struct RuleRun {
    /// The rule.
    pub sharing: Sharing,
    /// Its reports, round 0 (before fine-tuning) first.
    pub reports: Vec<RoundReport>,
}

/// Everything [`run_rule`] needs besides the rule.
pub struct RunInputs<'a, B: Backend> {
    /// The settings.
    pub config: &'a Cifar10Config,
    /// The data set.
    pub data: Arc<Cifar10>,
    /// The clients' split.
    pub split: &'a ClientSplit,
    /// The frozen backbone with a 10-class head (see [`load_backbone`]).
    pub backbone: &'a MobileNetV3<B>,
    /// The frozen-prefix cache when [`Cifar10Config::uses_cache`] (see [`build_cache`]).
    pub cache: Option<Arc<PrefixCache>>,
    /// Where `<rule>/metrics.jsonl` and `<rule>/checkpoint/` go; `None` writes nothing.
    pub out_dir: Option<&'a Path>,
    /// Continue from `<rule>/checkpoint/` when present.
    pub resume: bool,
    /// Show progress bars.
    pub progress: bool,
    /// The device.
    pub device: B::Device,
}

/// Computes the frozen-prefix cache for `backbone` (its `classifier.0` frozen product; the
/// adapters are not needed, all clients share the frozen part).
pub fn build_cache<B: Backend>(
    config: &Cifar10Config,
    data: &Cifar10,
    backbone: &MobileNetV3<B>,
    progress: bool,
    device: &B::Device,
) -> Result<PrefixCache> {
    let n_train = config.train_limit.unwrap_or(usize::MAX);
    let n_test = config.test_limit.unwrap_or(usize::MAX);
    PrefixCache::build(
        backbone,
        data,
        (n_train, n_test),
        &ImageTransform::imagenet(config.image_size),
        progress,
        device,
    )
}

/// The federation of one sharing rule: the task (cached or not), one model per client and
/// what is shared (the adapters as the rule says, and the new head under every rule). What
/// [`run_rule`] simulates, and what a Flower node takes one client of.
pub fn federation<B: AutodiffBackend>(
    inputs: &RunInputs<'_, B>,
    sharing: Sharing,
) -> Result<Federation<B, CifarTask<B>>> {
    let config = inputs.config;
    config.validate()?;
    let task = match &inputs.cache {
        Some(cache) => CifarTask::cached(
            inputs.data.clone(),
            inputs.split.clone(),
            cache.clone(),
            config.seed,
            &inputs.device,
        ),
        None => CifarTask::uncached(
            inputs.data.clone(),
            inputs.split.clone(),
            ImageTransform::imagenet(config.image_size),
            config.augment,
            config.seed,
            &inputs.device,
        ),
    };
    Ok(Federation {
        task,
        models: build_client_models(inputs.backbone, config)?,
        spec: ShareSpec::new(sharing).also_share(HEAD),
        config: config.simulation(inputs.progress),
    })
}

/// Runs the experiment under one sharing rule, writing `metrics.jsonl` and a checkpoint after
/// every round into `out_dir/<rule>/` and, with `resume`, continuing from that checkpoint.
pub fn run_rule<B: AutodiffBackend>(
    inputs: &RunInputs<'_, B>,
    sharing: Sharing,
) -> Result<RuleRun> {
    let config = inputs.config;
    let federation = federation(inputs, sharing)?;
    let strategy = config.build_strategy(federation.privacy_delta())?;
    let mut sim = Simulation::new(
        federation.config,
        federation.spec,
        federation.task,
        strategy,
        federation.models,
    )?;

    let Some(out_dir) = inputs.out_dir else {
        let reports = sim.run(|_, _| Ok(()))?;
        return Ok(RuleRun { sharing, reports });
    };
    let reports = run_in_dir(
        &mut sim,
        &out_dir.join(sharing.name()),
        config,
        inputs.resume,
        |saved| Cifar10Config {
            rounds: config.rounds,
            cohort: config.cohort,
            ..saved
        },
    )?;
    Ok(RuleRun { sharing, reports })
}

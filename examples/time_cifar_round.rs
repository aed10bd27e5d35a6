//! Times the CIFAR-10 experiment's cached training round: sequential clients against
//! cohort-batched ones, for several cohort sizes and client counts. Synthetic images and a
//! randomly initialised MobileNetV3-small (the round's cost does not depend on the values);
//! each client holds 1,250 training images (the paper's 2 shards of 625), 3 local epochs,
//! batch 32, AdamW, LoRA rank 4 on `classifier.0` with dropout, FedAvg.
//!
//! ```text
//! cargo run --release --example time_cifar_round -- --clients 10,40,160 --cohort off,1,5,10,20,40,auto
//! ```
//!
//! Prints one JSON line per setting: the training time of a round (the sum of the clients'
//! training seconds), the whole round (aggregation and scoring included, on a small test
//! split), the CPU seconds of a round (all threads; Linux only, else `null`) and the number of
//! rounds timed.

use std::sync::Arc;
use std::time::Instant;

use burn::backend::Autodiff;
use clap::Parser;
use fedvlm::data::{Cifar10, Cifar10Split};
use fedvlm::experiments::cifar10::{
    Cifar10Config, ClientSplit, RunInputs, build_cache, federation, load_backbone,
};
use fedvlm::federated::CohortMode;
use fedvlm::{FedError, Sharing, Simulation};
use rand::{RngExt, SeedableRng, rngs::ChaCha8Rng};

/// CPU by default; `--features cuda` runs on the GPU (what `scripts/gpu_check.sh` times).
#[cfg(not(feature = "cuda"))]
type B = Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda")]
type B = Autodiff<burn::backend::Cuda>;

#[derive(Parser)]
struct Args {
    /// Client counts to time.
    #[arg(long, value_delimiter = ',', default_value = "40")]
    clients: Vec<usize>,
    /// Cohort settings to time (`off`, `auto` or a size).
    #[arg(long, value_delimiter = ',', default_value = "off,auto")]
    cohort: Vec<String>,
    /// Rounds timed per setting (after one warm-up round).
    #[arg(long, default_value_t = 2)]
    rounds: u64,
    /// Rounds timed for the sequential setting (it is slow).
    #[arg(long, default_value_t = 1)]
    sequential_rounds: u64,
    /// Distinct synthetic images behind the clients' 1,250 each.
    #[arg(long, default_value_t = 4000)]
    images: usize,
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s); `None` where that file is not there. On a busy
/// machine this is steadier than wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which ends with the last `)`): utime and stime are the
    // 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn images(n: usize, seed: u64) -> Cifar10Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let images = (0..n * 3072).map(|_| rng.random_range(0..=255u8)).collect();
    Cifar10Split { images, labels }
}

fn split(clients: usize, images: usize) -> ClientSplit {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    ClientSplit {
        train: (0..clients)
            .map(|_| (0..1250).map(|_| rng.random_range(0..images)).collect())
            .collect(),
        test: (0..clients).map(|k| vec![k % 100, (k + 7) % 100]).collect(),
        global_test: Vec::new(),
        classes: vec![(0..10).collect(); clients],
    }
}

fn main() -> Result<(), FedError> {
    let args = Args::parse();
    let device = Default::default();
    let base = Cifar10Config {
        image_size: 32,
        global_eval_every: 0,
        ..Cifar10Config::default()
    };
    let data = Arc::new(Cifar10::from_splits(
        images(args.images, 1),
        images(100, 2),
    )?);
    let backbone = load_backbone::<B>(&base, None, &device)?;
    let t = Instant::now();
    let cache = Arc::new(build_cache(&base, &data, &backbone, false, &device)?);
    eprintln!(
        "cache of {} images in {:.1} s",
        args.images + 100,
        t.elapsed().as_secs_f64()
    );
    for &clients in &args.clients {
        let split = split(clients, args.images);
        for cohort in &args.cohort {
            let mode = CohortMode::parse(cohort)?;
            let config = Cifar10Config {
                clients,
                shards: 2 * clients,
                cohort: mode,
                ..base.clone()
            };
            // `clone` is a copy on the CPU backend and a real clone on CUDA.
            #[allow(clippy::clone_on_copy)]
            let inputs = RunInputs {
                config: &config,
                data: data.clone(),
                split: &split,
                backbone: &backbone,
                cache: Some(cache.clone()),
                out_dir: None,
                resume: false,
                progress: false,
                device: device.clone(),
            };
            let fed = federation(&inputs, Sharing::PLora)?;
            let strategy = config.build_strategy(fed.privacy_delta())?;
            let mut sim = Simulation::new(fed.config, fed.spec, fed.task, strategy, fed.models)?;
            let rounds = if mode == CohortMode::Off {
                args.sequential_rounds
            } else {
                args.rounds
            };
            // Warm-up (uploads the cache to the device for cohorts).
            if mode != CohortMode::Off {
                sim.run_one_round()?;
            }
            let (mut train, mut whole) = (0.0, 0.0);
            let cpu_start = cpu_seconds();
            for _ in 0..rounds {
                let t = Instant::now();
                let report = sim.run_one_round()?;
                whole += t.elapsed().as_secs_f64();
                train += report.clients.iter().map(|c| c.seconds).sum::<f64>();
            }
            let r = rounds.max(1) as f64;
            let cpu = match (cpu_start, cpu_seconds()) {
                (Some(a), Some(b)) => format!("{:.3}", (b - a) / r),
                _ => "null".into(),
            };
            println!(
                "{{\"clients\": {clients}, \"cohort\": \"{cohort}\", \"train_s\": {:.4}, \"round_s\": {:.4}, \"round_cpu_s\": {cpu}, \"rounds\": {rounds}}}",
                train / r,
                whole / r
            );
        }
    }
    Ok(())
}

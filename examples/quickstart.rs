//! Quick start: a tiny model federated over a synthetic non-IID task on the CPU.
//!
//! Every client labels the same clusters with its own permutation of the classes, so the
//! clients conflict. The example trains the same adapters under pLoRA, FedAvg-LoRA and FFA-LoRA
//! (and FedSA-LoRA) with the same seed and prints each client's personalised test accuracy.
//! The settings are [`Quickstart`]'s, which a Flower node's `--task synthetic` shares.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart --features cuda   # on an NVIDIA GPU
//! ```

use burn::backend::Autodiff;
use fedvlm::federated::{JsonlWriter, LabelledRun, ShareSpec, write_csv, write_svg_chart};
use fedvlm::synthetic::Quickstart;
use fedvlm::{FedAvg, Sharing, Simulation};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type B = Autodiff<burn::backend::Flex>;
#[cfg(feature = "cuda")]
type B = Autodiff<burn::backend::Cuda>;

fn main() -> fedvlm::Result<()> {
    let device = Default::default();
    let quickstart = Quickstart::new(6);
    let (data, lora, config) = (quickstart.data, quickstart.lora, &quickstart.simulation);
    std::fs::create_dir_all("target/quickstart")
        .map_err(|e| fedvlm::FedError::io("target/quickstart", e))?;

    println!(
        "{} clients with conflicting label permutations, {} rounds x {} local epochs, rank {}\n",
        data.num_clients, config.rounds, config.local_epochs, lora.rank
    );
    let mut results = Vec::new();
    let mut runs = Vec::new();
    for sharing in Sharing::ALL {
        let task = quickstart.task::<B>(&device)?;
        let models = quickstart.models::<B>(&device)?;
        let mut sim = Simulation::new(
            config.clone(),
            ShareSpec::new(sharing),
            task,
            FedAvg::new(),
            models,
        )?;
        let mut log = JsonlWriter::create(format!("target/quickstart/{sharing}.jsonl"))?;
        let started = std::time::Instant::now();
        let reports = sim.run(|_, report| log.write(report))?;
        let seconds = started.elapsed().as_secs_f64();
        let last = reports.last().expect("at least one round");
        let accuracies: Vec<f64> = last
            .clients
            .iter()
            .map(|c| c.test.map_or(f64::NAN, |m| m.accuracy))
            .collect();
        let before = reports[0].mean_test.map_or(f64::NAN, |m| m.accuracy);
        let after = last.mean_test.map_or(f64::NAN, |m| m.accuracy);
        results.push((sharing, before, after, accuracies, seconds));
        runs.push((sharing.name(), reports));
    }

    println!(
        "{:<12} {:>8} {:>8} {:>8}   per-client accuracy after the last round",
        "rule", "before", "after", "seconds"
    );
    for (sharing, before, after, per_client, seconds) in results {
        let per_client: Vec<String> = per_client.iter().map(|a| format!("{a:.2}")).collect();
        println!(
            "{:<12} {:>8.3} {:>8.3} {:>8.2}   {}",
            sharing.name(),
            before,
            after,
            seconds,
            per_client.join(" ")
        );
    }
    let labelled: Vec<LabelledRun> = runs
        .iter()
        .map(|(label, reports)| LabelledRun { label, reports })
        .collect();
    write_csv("target/quickstart/rounds.csv", &labelled)?;
    write_svg_chart(
        "target/quickstart/accuracy.svg",
        "synthetic conflicting clients: pLoRA vs baselines",
        &labelled,
    )?;
    println!("\nper-round reports: target/quickstart/<rule>.jsonl, rounds.csv, accuracy.svg");
    Ok(())
}

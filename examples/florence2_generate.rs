//! Florence-2 on one or more images: a caption, objects with boxes, OCR, phrase grounding, or a
//! free-text question, as transformers' Florence-2 examples do.
//!
//! ```text
//! cargo run --release --example florence2_generate -- --image cat.jpg                 # <CAPTION>
//! cargo run --release --example florence2_generate -- --image cat.jpg --task "<OD>"
//! cargo run --release --example florence2_generate -- --image cat.jpg --task "<MORE_DETAILED_CAPTION>"
//! cargo run --release --example florence2_generate -- --image cat.jpg \
//!     --task "<CAPTION_TO_PHRASE_GROUNDING>" --text-input "a cat on a sofa"
//! cargo run --release --example florence2_generate -- --image cat.jpg --question "What color is the cat?"
//! cargo run --release --example florence2_generate -- --image a.jpg --image b.png      # one batch
//! cargo run --release --example florence2_generate -- --model ./Florence-2-base --image cat.jpg
//! cargo run --release --example florence2_generate --features cuda -- --image cat.jpg  # NVIDIA GPU
//! ```
//!
//! `--model` is a hub id (default `microsoft/Florence-2-base`; `microsoft/Florence-2-large` and
//! transformers' converted `florence-community/*` checkpoints work too), downloaded once into the
//! Hugging Face cache (`HF_HUB_CACHE`, `HF_HOME`, else `~/.cache/huggingface/hub`), or a folder
//! with `config.json`, `model.safetensors` or `pytorch_model.bin`, `tokenizer.json` and
//! optionally `preprocessor_config.json`. `HF_HUB_OFFLINE=1` reads the cache only.
//!
//! Prints each image's answer (text, or boxes/polygons with labels in the image's pixels), the
//! raw generated text with `--raw`, and the seconds spent loading and answering.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use fedvlm::models::florence2::hub::HubError;
use fedvlm::models::florence2::processor::{Florence2Answer, load_image};
use fedvlm::models::florence2::{Florence2Pipeline, Florence2Query, PipelineError};

/// CPU by default; `--features cuda` runs on the GPU.
#[cfg(not(feature = "cuda"))]
type B = burn::backend::Flex;
#[cfg(feature = "cuda")]
type B = burn::backend::Cuda;

#[derive(Parser, Debug)]
#[command(about = "Florence-2: caption, detect, read or answer questions about images")]
struct Args {
    /// A hub model id or a local checkpoint folder.
    #[arg(long, default_value = "microsoft/Florence-2-base")]
    model: String,
    /// An image (PNG or JPEG); repeat for a batch.
    #[arg(long, required = true)]
    image: Vec<PathBuf>,
    /// The task token: <CAPTION>, <DETAILED_CAPTION>, <MORE_DETAILED_CAPTION>, <OD>,
    /// <DENSE_REGION_CAPTION>, <REGION_PROPOSAL>, <OCR>, <OCR_WITH_REGION>,
    /// <CAPTION_TO_PHRASE_GROUNDING>, <OPEN_VOCABULARY_DETECTION>, ...
    #[arg(long, default_value = "<CAPTION>")]
    task: String,
    /// The task's input (a phrase for <CAPTION_TO_PHRASE_GROUNDING>, a region as <loc_*> tokens
    /// for <REGION_TO_DESCRIPTION>, ...).
    #[arg(long)]
    text_input: Option<String>,
    /// A free-text question instead of a task (the question is the whole prompt).
    #[arg(long, conflicts_with_all = ["task", "text_input"])]
    question: Option<String>,
    /// Tokens generated at most.
    #[arg(long, default_value_t = 1024)]
    max_new_tokens: usize,
    /// Beams (1: greedy decoding); default the model's (3 for Florence-2).
    #[arg(long)]
    num_beams: Option<usize>,
    /// Also print the generated text with its special and location tokens.
    #[arg(long)]
    raw: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(missing) = args.image.iter().find(|path| !path.is_file()) {
        eprintln!("error: image {} not found", missing.display());
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            if let PipelineError::Hub(HubError::NotInCache { .. }) = e {
                eprintln!(
                    "hint: run once without HF_HUB_OFFLINE to download the model, or pass \
                     --model with a local folder"
                );
            }
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), PipelineError> {
    let device = Default::default();
    // Decode the images first: a bad file should not wait for the model.
    let images = args
        .image
        .iter()
        .map(load_image)
        .collect::<Result<Vec<_>, _>>()?;
    let query = match &args.question {
        Some(question) => Florence2Query::new(question.clone()),
        None => {
            let query = Florence2Query::new(args.task.clone());
            match &args.text_input {
                Some(input) => query.with_input(input.clone()),
                None => query,
            }
        }
    };

    let start = Instant::now();
    let pipeline = Florence2Pipeline::<B>::from_pretrained(&args.model, &device)?;
    let load_s = start.elapsed().as_secs_f64();

    let mut config = pipeline.generation_config();
    config.max_new_tokens = args.max_new_tokens;
    if let Some(beams) = args.num_beams {
        config.num_beams = beams;
    }
    let queries = vec![query.clone(); images.len()];
    let start = Instant::now();
    let outputs = pipeline.answer_batch(&images, &queries, &config)?;
    let answer_s = start.elapsed().as_secs_f64();

    println!("prompt: {}", query.prompt());
    for (path, output) in args.image.iter().zip(&outputs) {
        match &output.answer {
            Florence2Answer::Text(text) => println!("{}: {text}", path.display()),
            other => println!("{}: {other:?}", path.display()),
        }
        if args.raw {
            println!("  raw: {}", output.text);
        }
    }
    let tokens: usize = outputs.iter().map(|o| o.ids.len().saturating_sub(1)).sum();
    println!(
        "loaded {} in {load_s:.2} s; answered in {answer_s:.2} s ({tokens} tokens, {} beams)",
        args.model, config.num_beams
    );
    Ok(())
}

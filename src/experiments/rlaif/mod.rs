//! The paper's main experiment (Section 4, Tables 3 and 4, Figures 2, 3 and 5): Florence-2
//! fine-tuned on RLAIF-V with pLoRA, FedAvg-LoRA (FLoRA), FFA-LoRA or FedSA-LoRA across
//! clients holding one or more source datasets each (or IID shares), or centrally.
//!
//! * [`central`]: [`centralized`], a federation's samples under one trainer (Figure 2).
//! * [`config`]: [`RlaifConfig`], the paper's settings by default.
//! * [`data`]: [`RlaifData::prepare`], RLAIF-V or OK-VQA rows ([`rows`]) to preprocessed,
//!   tokenised samples and the clients' split.
//! * [`spill`]: [`SpilledRows`], rows whose images and text wait in a file as they are read,
//!   so that memory does not grow with the row count.
//! * [`texts`]: [`SampleTexts`], each sample's source, and the test samples' question and
//!   answers where the rows put them.
//! * [`pipeline`]: client models, the frozen-prefix cache, and [`run_rule`] (metrics,
//!   checkpoints, resume, generated answers).
//! * [`sweep`]: the client ablation (Table 4): one federation per client count and its table.
//! * [`answers`]: answer-level scores of generated answers before fine-tuning and after rounds.

pub mod answers;
pub mod central;
pub mod config;
pub mod data;
pub mod pipeline;
pub mod rows;
mod source_names;
pub mod spill;
pub mod sweep;
pub mod texts;

pub use answers::{
    ANSWER_METRICS_FILE, AnswerEvalConfig, AnswerLog, AnswerRoundReport, evaluate_answers,
    write_answer_csv,
};
pub use central::centralized;
pub use config::RlaifConfig;
pub use data::RlaifData;
pub use pipeline::{
    ANSWERS_FILE, GeneratedAnswer, RuleRun, RunInputs, build_cache, build_client_models,
    federation, freeze_base, run_rule,
};
pub use rows::{VqaDataset, VqaRow, VqaRows};
pub use spill::{SpilledRows, SpilledText};
pub use texts::{SampleText, SampleTexts};

//! CIFAR-10 with an ImageNet-pretrained MobileNetV3: the paper's pLoRA-vs-LoRA experiment
//! (Figure 4). 40 clients each hold 2 of 80 label-sorted shards (McMahan et al.'s
//! pathological non-IID split), train 3 local epochs per round for 150 rounds, and are scored
//! on the test images of their own classes.
//!
//! * [`config`]: every setting, with the paper's values as defaults and a `quick` preset.
//! * [`clients`]: the split of the training set into shards and of the test set by class.
//! * [`cache`]: the frozen-prefix cache (features and the adapted layer's frozen product,
//!   computed once per image).
//! * [`task`]: the [`crate::FederatedTask`] that trains and scores the model.
//! * [`pipeline`]: one run per sharing rule, with reports, checkpoints, resume and charts.

pub mod cache;
pub mod clients;
mod cohort;
mod cohort_step;
pub mod config;
mod host_cohort;
mod host_eval;
mod host_step;
pub mod pipeline;
pub mod task;
mod vector_builds;

pub use cache::{CacheBackbone, PrefixCache};
pub use clients::ClientSplit;
pub use cohort::{COHORT_MEMORY_BUDGET, CPU_COHORT_SIZE};
pub use config::{Cifar10Config, StrategyKind};
pub use host_cohort::CohortKernel;
pub use pipeline::{
    HEAD, RuleRun, RunInputs, build_cache, build_client_models, federation, load_backbone,
    run_rule, torchvision_weights,
};
pub use task::CifarTask;

//! Centralised training over a federation's samples: the paper's Figure 2 compares FedVLM with
//! one trainer holding every client's data, for the same rounds and local epochs.

use super::data::RlaifData;
use crate::experiments::vqa::VqaSplit;

/// The same samples as `data` with one trainer: every trainer's train split merged, and
/// every test split merged, in trainer order (what [`RlaifData::prepare`] gives with
/// [`RlaifConfig::centralized`](super::RlaifConfig::centralized) on the same rows and
/// settings). The samples are shared, so a frozen-prefix cache built for `data` serves it.
pub fn centralized(data: &RlaifData) -> RlaifData {
    let mut sources: Vec<String> = data.sources.concat();
    sources.sort();
    sources.dedup();
    RlaifData {
        split: VqaSplit {
            train: vec![data.split.train.concat()],
            test: vec![data.split.test.concat()],
            global_test: Vec::new(),
        },
        sources: vec![sources],
        ..data.clone()
    }
}

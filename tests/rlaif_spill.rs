//! Rows spilled to a file as they are read ([`SpilledRows`]) prepare into exactly the data
//! the same rows in memory do: same split, same samples (token ids and image digests), same
//! texts, same skipped task-token rows; for RLAIF-V and OK-VQA, federated and centralised,
//! and each image and each sample's token ids are read back from the store.

mod common;

use std::sync::Arc;

use burn::backend::{Autodiff, Flex};
use common::okvqa_parquet::write_okvqa_dataset;
use common::rlaif_shards::write_dataset;
use fedvlm::data::{OkVqa, OkVqaOptions, RlaifV, RlaifVOptions};
use fedvlm::experiments::rlaif::{RlaifConfig, RlaifData, SpilledRows, VqaRow, VqaRows};
use fedvlm::experiments::vqa::{EncodedBytes, ImageStore, SampleIds, SampleImage};
use fedvlm::models::florence2::Florence2Pipeline;
use fedvlm::models::florence2::processor::Florence2Processor;

type B = Autodiff<Flex>;

fn processor() -> Florence2Processor {
    let (_, _, processor) = Florence2Pipeline::<B>::tiny_random(0, &Default::default())
        .unwrap()
        .into_parts();
    processor
}

fn config(clients: usize, iid: bool, centralized: bool) -> RlaifConfig {
    RlaifConfig {
        clients,
        iid,
        centralized,
        test_fraction: 0.25,
        max_prompt_len: 24,
        max_answer_len: 6,
        seed: 5,
        ..RlaifConfig::default()
    }
}

fn spill<'a>(rows: VqaRows<'a>, store: &Arc<ImageStore>) -> SpilledRows {
    let mut spilled = SpilledRows::new(rows.dataset(), Arc::clone(store));
    for r in 0..rows.len() {
        spilled.push(rows.row(r).unwrap()).unwrap();
    }
    spilled
}

/// Prepares `rows` in memory and spilled, and checks that the two agree.
fn same_data(rows: VqaRows<'_>, config: &RlaifConfig, processor: &Florence2Processor) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::temporary(dir.path()).unwrap());
    let spilled = spill(rows, &store);
    assert_eq!(spilled.len(), rows.len());
    assert_eq!(spilled.source_keys(), rows.source_keys());
    let memory = RlaifData::prepare(config, rows, processor).unwrap();
    let from_file = RlaifData::prepare(config, VqaRows::from(&spilled), processor).unwrap();
    assert_eq!(from_file.split, memory.split);
    assert_eq!(from_file.sources, memory.sources);
    assert_eq!(from_file.texts, memory.texts);
    assert_eq!(from_file.skipped_task_token, memory.skipped_task_token);
    assert_eq!(from_file.samples.len(), memory.samples.len());
    for (a, b) in from_file.samples.iter().zip(memory.samples.iter()) {
        assert_eq!(a.token_ids().unwrap(), b.token_ids().unwrap());
        // Memory keeps where a spilled sample's ids are, not the ids; in-memory rows keep them.
        match &a.ids {
            SampleIds::Stored { store: s, .. } => assert_eq!(s.path(), store.path()),
            other => panic!("a spilled sample's ids are not in the store: {other:?}"),
        }
        assert!(matches!(b.ids, SampleIds::Memory(_)));
        assert_eq!(a.image_digest, b.image_digest);
        assert_eq!(a.image_size, b.image_size);
        match &a.image {
            SampleImage::Encoded {
                bytes: EncodedBytes::Stored { store: s, .. },
                ..
            } => assert_eq!(s.path(), store.path()),
            other => panic!("a spilled row's image is not in the store: {other:?}"),
        }
        assert_eq!(a.image.pixels().unwrap(), b.image.pixels().unwrap());
    }
}

#[test]
fn spilled_rlaif_v_rows_prepare_as_rows_in_memory() {
    let processor = processor();
    let dir = tempfile::tempdir().unwrap();
    write_dataset(dir.path());
    let rows = RlaifV::load(dir.path(), &RlaifVOptions::new()).unwrap();
    // A task token in one question: skipped and counted the same way.
    let summary = rows.summary().clone();
    let mut samples = rows.into_samples();
    samples[3].question = "<OCR> what does it say?".into();
    let rows = RlaifV::from_parts(samples, summary);
    for config in [
        config(2, false, false),
        config(3, true, false),
        config(2, false, true),
    ] {
        same_data(VqaRows::from(&rows), &config, &processor);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ImageStore::temporary(dir.path()).unwrap());
    let spilled = spill(VqaRows::from(&rows), &store);
    assert!(VqaRows::from(&spilled).row(0).is_none());
    assert_eq!(
        VqaRows::from(&spilled).source(0),
        Some(rows.samples()[0].origin_dataset.as_str())
    );
    let text = spilled.text(3).unwrap().unwrap();
    assert_eq!(text.question, rows.samples()[3].question);
    assert_eq!(text.answer, VqaRow::RlaifV(&rows.samples()[3]).answer());
}

#[test]
fn spilled_okvqa_rows_prepare_as_rows_in_memory() {
    let processor = processor();
    let dir = tempfile::tempdir().unwrap();
    write_okvqa_dataset(dir.path(), 12);
    let rows = OkVqa::load(dir.path(), &OkVqaOptions::new()).unwrap();
    for config in [config(2, true, false), config(2, true, true)] {
        same_data(VqaRows::from(&rows), &config, &processor);
    }
}

//! The OK-VQA reader: the committed file written by Hugging Face `datasets` in the hub's schema
//! (`scripts/make_okvqa_fixture.py`), a larger one written here in the same schema, malformed
//! rows skipped and counted (or refused in strict mode), local folders and the offline hub
//! cache, and IID partitions.

mod common;

use std::path::Path;

use common::offline_hub;
use common::okvqa_parquet::{OKVQA_SCHEMA, okvqa_fixture_dir, write_okvqa_dataset};
use fedvlm::data::{
    DataError, OKVQA_REPO, OkVqa, OkVqaFiles, OkVqaOptions, OkVqaSkip, OkVqaSource,
    RlaifVPartitionOptions, RlaifVScheme, partition_okvqa,
};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn fixture() -> OkVqa {
    OkVqa::load(okvqa_fixture_dir(), &OkVqaOptions::new()).expect("the datasets-written fixture")
}

#[test]
fn the_datasets_written_file_is_read_and_its_malformed_rows_counted() {
    let data = fixture();
    let summary = data.summary();
    assert_eq!(summary.rows_seen, 12);
    assert_eq!(summary.row_groups, 3, "datasets wrote row groups of 4");
    assert_eq!(summary.kept, 6);
    assert_eq!(data.len(), 6);
    for reason in OkVqaSkip::ALL {
        assert_eq!(summary.skipped_for(reason), 1, "{reason:?}");
    }
    assert_eq!(summary.rows_seen, summary.kept + summary.skipped_total());
    assert!(!summary.stopped_early);

    let targets: Vec<&str> = data.samples().iter().map(|s| s.answer.as_str()).collect();
    // "vine" and "husky" win ties by appearing first.
    assert_eq!(
        targets,
        [
            "racing",
            "vine",
            "teddy bear",
            "united kingdom",
            "surfing",
            "husky"
        ]
    );
    let first = &data.samples()[0];
    assert_eq!(first.question_id, "2971475");
    assert_eq!(first.question, "What sport can you use this for?");
    assert_eq!(first.answers.len(), 10);
    assert_eq!(
        first.answers.iter().filter(|a| *a == "motocross").count(),
        4
    );
    assert_eq!(first.question_type.as_deref(), Some("one"));
    assert_eq!(first.answer_type.as_deref(), Some("other"));
    assert_eq!((first.row_group, first.row), (0, 0));
    let last = &data.samples()[5];
    assert_eq!((last.row_group, last.row), (1, 5));
    for sample in data.samples() {
        let image = sample.decode_image().expect("decodes");
        assert_eq!((image.width(), image.height()), (20, 14));
    }
}

#[test]
fn strict_mode_refuses_the_first_malformed_row() {
    let err = OkVqa::load(okvqa_fixture_dir(), &OkVqaOptions::new().strict(true))
        .expect_err("a malformed row");
    match err {
        DataError::MalformedOkVqaRow {
            row,
            row_group,
            row_in_group,
            reason,
            ..
        } => {
            assert_eq!((row, row_group, row_in_group), (6, 1, 2));
            assert_eq!(reason, OkVqaSkip::MissingImage);
        }
        other => panic!("{other:?}"),
    }
}

/// Column paths, physical types and levels of a parquet file's leaves.
fn leaves(path: &Path) -> Vec<(String, String, i16, i16)> {
    let file = std::fs::File::open(path).expect("open");
    let reader = SerializedFileReader::new(file).expect("parquet");
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    schema
        .columns()
        .iter()
        .map(|c| {
            (
                c.path().string(),
                format!("{:?}", c.physical_type()),
                c.max_def_level(),
                c.max_rep_level(),
            )
        })
        .collect()
}

#[test]
fn the_test_writer_uses_the_schema_datasets_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_okvqa_dataset(dir.path(), 4);
    let ours = leaves(&dir.path().join("data/val2014-00000-of-00001.parquet"));
    let theirs = leaves(&okvqa_fixture_dir().join("data/val2014-00000-of-00001.parquet"));
    assert_eq!(ours, theirs);
    assert!(
        ours.iter()
            .any(|(p, _, d, r)| p == "answers.list.element" && (*d, *r) == (3, 1)),
        "{ours:?}"
    );
    assert!(OKVQA_SCHEMA.contains("optional group answers (LIST)"));
}

#[test]
fn a_larger_file_limits_and_iid_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = write_okvqa_dataset(dir.path(), 16);
    assert_eq!(rows.len(), 23);
    let data = OkVqa::load(dir.path(), &OkVqaOptions::new()).expect("load");
    let summary = data.summary();
    assert_eq!((summary.rows_seen, summary.kept), (23, 16));
    assert_eq!(summary.row_groups, 5);
    assert_eq!(
        summary.skipped_for(OkVqaSkip::NoAnswers),
        2,
        "null and empty lists"
    );
    for reason in [
        OkVqaSkip::MissingImage,
        OkVqaSkip::UndecodableImage,
        OkVqaSkip::EmptyQuestion,
        OkVqaSkip::WrongAnswerCount,
        OkVqaSkip::BlankAnswer,
    ] {
        assert_eq!(summary.skipped_for(reason), 1, "{reason:?}");
    }
    assert_eq!(data.samples()[3].answer, "cat");
    assert!(data.summary().to_string().contains("no_answers=2"));

    // Any list length, when asked.
    let any =
        OkVqa::load(dir.path(), &OkVqaOptions::new().answers_per_question(None)).expect("load");
    assert_eq!(any.len(), 17, "the nine-answer row is kept");

    let first = OkVqa::load(dir.path(), &OkVqaOptions::new().max_samples(5)).expect("load");
    assert_eq!(first.len(), 5);
    assert!(first.summary().stopped_early);
    assert_eq!(first.samples()[..], data.samples()[..5]);

    let clients = partition_okvqa(
        &data,
        &RlaifVPartitionOptions::new(RlaifVScheme::Iid {
            num_clients: 2,
            seed: 7,
        })
        .test_fraction(0.25)
        .seed(7),
    )
    .expect("IID");
    assert_eq!(clients.len(), 2);
    let mut all: Vec<usize> = Vec::new();
    for client in &clients {
        assert_eq!(client.len(), 8);
        assert_eq!(client.test.len(), 2);
        assert_eq!(client.sources, ["ok-vqa"]);
        all.extend(&client.train);
        all.extend(&client.test);
    }
    all.sort_unstable();
    assert_eq!(all, (0..16).collect::<Vec<_>>());
    // A by-source grouping cannot make two clients of one source.
    assert!(
        partition_okvqa(
            &data,
            &RlaifVPartitionOptions::new(RlaifVScheme::GroupedBySource { num_clients: 2 })
        )
        .is_err()
    );
}

#[test]
fn files_from_a_local_folder_and_the_offline_cache() {
    let cache = tempfile::tempdir().expect("cache");
    let options = offline_hub(cache.path());
    let fixture = okvqa_fixture_dir();

    // The repository layout (`data/` inside) and a flat folder both work.
    let local =
        OkVqaFiles::resolve_with(fixture.to_str().expect("utf-8"), &options).expect("local folder");
    assert_eq!(local.source, OkVqaSource::Local(fixture.clone()));
    assert_eq!(local.files.len(), 1);
    let flat = OkVqaFiles::from_dir(fixture.join("data")).expect("flat folder");
    assert_eq!(flat.files, local.files);
    let empty = tempfile::tempdir().expect("empty");
    assert!(matches!(
        OkVqaFiles::from_dir(empty.path()),
        Err(DataError::NoShards { .. })
    ));

    let err = OkVqaFiles::resolve_with(OKVQA_REPO, &options).expect_err("empty cache");
    assert!(
        matches!(&err, DataError::NotInHubCache { repo, .. } if repo == OKVQA_REPO),
        "{err:?}"
    );
    // The hub cache layout: refs/main -> snapshots/<commit>/data/val2014-*.parquet.
    let repo = cache.path().join("datasets--lmms-lab--OK-VQA");
    let snapshot = repo.join("snapshots").join("c9f8589").join("data");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs").join("main"), "c9f8589").expect("ref");
    std::fs::copy(
        &local.files[0],
        snapshot.join("val2014-00000-of-00001.parquet"),
    )
    .expect("copy");
    std::fs::write(snapshot.join("README.md"), "not data").expect("readme");
    let cached = OkVqaFiles::resolve_with(OKVQA_REPO, &options).expect("cached");
    assert_eq!(
        cached.source,
        OkVqaSource::Hub {
            repo: OKVQA_REPO.into(),
            revision: "main".into()
        }
    );
    assert_eq!(cached.files.len(), 1);
    assert_eq!(
        OkVqa::load_files(&cached.files, &OkVqaOptions::new())
            .expect("load")
            .len(),
        6
    );
}

#[test]
fn files_without_the_needed_columns_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // An RLAIF-V shard has no `answers` column.
    common::rlaif_shards::write_dataset(dir.path());
    let shard = dir.path().join("RLAIF-V-Dataset_000.parquet");
    let err = OkVqa::load_files(&[&shard], &OkVqaOptions::new()).expect_err("no answers");
    assert!(
        matches!(&err, DataError::MissingColumn { column, .. } if column == "answers"),
        "{err:?}"
    );
    let junk = dir.path().join("val2014-junk.parquet");
    std::fs::write(&junk, b"PAR1 not really").expect("junk");
    let err = OkVqa::load_files(&[&junk], &OkVqaOptions::new()).expect_err("junk");
    assert!(matches!(err, DataError::NotParquet { .. }), "{err:?}");
}

//! The reader: shards found and sorted, samples and per-source counts, malformed rows
//! skipped and counted, image checks, strict mode, limits, typed errors.

use super::*;

#[test]
fn shards_are_found_sorted() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let shards = rlaif_v_shards(dir.path()).expect("shards");
    let names: Vec<&str> = shards.iter().map(|p| name(p)).collect();
    assert_eq!(
        names,
        ["RLAIF-V-Dataset_000.parquet", "RLAIF-V-Dataset_001.parquet"]
    );
    // The shards really use the two codecs the reader must decode.
    for (shard, codec) in shards
        .iter()
        .zip([Compression::SNAPPY, Compression::ZSTD(ZstdLevel::default())])
    {
        let file = std::fs::File::open(shard).expect("open");
        let reader = SerializedFileReader::new(file).expect("parquet");
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        let written = meta.row_group(0).column(1).compression();
        assert_eq!(
            std::mem::discriminant(&written),
            std::mem::discriminant(&codec)
        );
    }
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        rlaif_v_shards(empty.path()),
        Err(DataError::NoShards { .. })
    ));
}

#[test]
fn reads_samples_and_counts_per_source() {
    let (_dir, data) = dataset();
    let summary = data.summary();
    assert_eq!(data.len(), 13);
    assert_eq!(summary.files.len(), 2);
    assert_eq!(summary.row_groups, 4);
    assert_eq!(summary.rows_seen, 20);
    assert_eq!(data.sources(), [ALPHA, BETA, GAMMA]);
    let counts: Vec<usize> = summary.kept_per_source.values().copied().collect();
    assert_eq!(counts, [5, 4, 4]);
    assert!(!summary.stopped_early);
    assert_eq!(summary.capped, 0);

    let first = &data.samples()[0];
    assert_eq!(first.question, "What is in a0?");
    assert_eq!(first.chosen, "a0 shows a pattern.");
    assert_eq!(first.origin_dataset, ALPHA);
    assert_eq!(name(&first.source_file), "RLAIF-V-Dataset_000.parquet");
    assert_eq!((first.row_group, first.row), (0, 0));
    let img = first.decode_image().expect("jpeg decodes");
    assert_eq!((img.width(), img.height()), (24, 16));
    // JPEG is lossy: compare with the encoded pattern loosely.
    let want = pattern(24, 16, 1);
    let got = img.to_rgb8();
    let mean_diff: f64 = want
        .as_raw()
        .iter()
        .zip(got.as_raw())
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
        .sum::<f64>()
        / want.as_raw().len() as f64;
    assert!(mean_diff < 20.0, "mean abs diff {mean_diff}");

    // A PNG round-trips exactly; rows count malformed ones too.
    let a4 = data
        .samples()
        .iter()
        .find(|s| s.question == "What is in a4?")
        .expect("a4");
    assert_eq!(name(&a4.source_file), "RLAIF-V-Dataset_001.parquet");
    assert_eq!((a4.row_group, a4.row), (1, 6));
    let png = a4.decode_image().expect("png decodes").to_rgb8();
    assert_eq!(png, pattern(16, 12, 11));
}

#[test]
fn malformed_rows_are_skipped_and_counted() {
    let (_dir, data) = dataset();
    let summary = data.summary();
    assert_eq!(summary.skipped_for(RlaifVSkip::MissingImage), 2);
    assert_eq!(summary.skipped_for(RlaifVSkip::UndecodableImage), 2);
    assert_eq!(summary.skipped_for(RlaifVSkip::EmptyQuestion), 1);
    assert_eq!(summary.skipped_for(RlaifVSkip::EmptyAnswer), 1);
    assert_eq!(summary.skipped_for(RlaifVSkip::MissingSource), 1);
    assert_eq!(summary.skipped_total(), 7);
    assert!(data.samples().iter().all(|s| s.decode_image().is_ok()));
    let text = summary.to_string();
    assert!(text.contains("13 samples from 3 sources"), "{text}");
    assert!(text.contains("undecodable_image=2"), "{text}");
}

#[test]
fn image_check_levels() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    // The header check keeps the truncated PNG (its header reads), not the garbage bytes.
    let header = RlaifV::load(
        dir.path(),
        &RlaifVOptions::new().image_check(ImageCheck::Header),
    )
    .expect("load");
    assert_eq!(header.len(), 14);
    assert_eq!(
        header.summary().skipped_for(RlaifVSkip::UndecodableImage),
        1
    );
    let cut = header
        .samples()
        .iter()
        .find(|s| s.question == "What is in cut?")
        .expect("cut");
    assert!(matches!(
        cut.decode_image(),
        Err(DataError::Malformed { .. })
    ));
    // No check keeps both.
    let none = RlaifV::load(
        dir.path(),
        &RlaifVOptions::new().image_check(ImageCheck::None),
    )
    .expect("load");
    assert_eq!(none.len(), 15);
    assert_eq!(none.summary().skipped_for(RlaifVSkip::UndecodableImage), 0);
}

#[test]
fn strict_mode_names_file_row_group_and_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let err = RlaifV::load(dir.path(), &RlaifVOptions::new().strict(true)).expect_err("strict");
    match &err {
        DataError::MalformedRow {
            path,
            row_group,
            row,
            row_in_group,
            reason,
        } => {
            assert!(path.ends_with("RLAIF-V-Dataset_000.parquet"), "{path}");
            assert_eq!((*row_group, *row, *row_in_group), (1, 6, 1));
            assert_eq!(*reason, RlaifVSkip::EmptyQuestion);
        }
        other => panic!("expected MalformedRow, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("RLAIF-V-Dataset_000.parquet"), "{message}");
    assert!(message.contains("row group 1"), "{message}");

    // The second shard alone: its first malformed row is the null image bytes.
    let shard1 = dir.path().join("RLAIF-V-Dataset_001.parquet");
    let err =
        RlaifV::load_files(&[&shard1], &RlaifVOptions::new().strict(true)).expect_err("strict");
    assert!(
        matches!(
            err,
            DataError::MalformedRow {
                row_group: 0,
                row: 1,
                reason: RlaifVSkip::MissingImage,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sample_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let quick = RlaifV::load(dir.path(), &RlaifVOptions::new().max_samples(3)).expect("load");
    assert_eq!(quick.len(), 3);
    let summary = quick.summary();
    assert!(summary.stopped_early);
    assert_eq!((summary.files.len(), summary.row_groups), (1, 1));
    assert_eq!(summary.rows_seen, 3);

    let capped =
        RlaifV::load(dir.path(), &RlaifVOptions::new().max_samples_per_source(2)).expect("load");
    let counts: Vec<usize> = capped.summary().kept_per_source.values().copied().collect();
    assert_eq!(counts, [2, 2, 2]);
    // Rows of a full source are not image-checked: the two undecodable images (alpha's and
    // beta's, each after its source's first two samples) count as capped, not skipped.
    assert_eq!(capped.summary().capped, 9);
    assert_eq!(capped.summary().skipped_total(), 5);
    assert_eq!(
        capped.summary().skipped_for(RlaifVSkip::UndecodableImage),
        0
    );
}

#[test]
fn truncated_file_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let bad = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(dir.path().join("RLAIF-V-Dataset_000.parquet")).expect("read");
    let cut = bad.path().join("RLAIF-V-Dataset_007.parquet");
    std::fs::write(&cut, &full[..full.len() / 2]).expect("write");
    let err = RlaifV::load(bad.path(), &RlaifVOptions::new()).expect_err("truncated");
    match &err {
        DataError::NotParquet { path, .. } => assert_eq!(Path::new(path), cut),
        other => panic!("expected NotParquet, got {other:?}"),
    }
    assert!(err.to_string().contains("RLAIF-V-Dataset_007.parquet"));
}

#[test]
fn non_parquet_file_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, content) in [
        (
            "RLAIF-V-Dataset_000.parquet",
            &b"question,chosen\nwhat?,that\n"[..],
        ),
        ("RLAIF-V-Dataset_001.parquet", &b""[..]),
    ] {
        let path: PathBuf = dir.path().join(file);
        std::fs::write(&path, content).expect("write");
        let err = RlaifV::load_files(&[&path], &RlaifVOptions::new()).expect_err("not parquet");
        assert!(
            matches!(&err, DataError::NotParquet { path: p, .. } if Path::new(p) == path),
            "{err:?}"
        );
    }
}

#[test]
fn missing_column_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    write_shard(
        &path,
        &[vec![row(ALPHA, "x", jpeg(1))]],
        Compression::SNAPPY,
        false,
    );
    let err = RlaifV::load(dir.path(), &RlaifVOptions::new()).expect_err("no origin");
    assert!(
        matches!(&err, DataError::MissingColumn { column, .. } if column == "origin_dataset"),
        "{err:?}"
    );
}

#[test]
fn shards_from_local_folder_and_offline_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let cache = tempfile::tempdir().expect("cache");
    let options = offline_hub(cache.path());

    let local = RlaifVShards::resolve_with(dir.path().to_str().expect("utf-8"), &options)
        .expect("local folder");
    assert_eq!(local.source, RlaifVSource::Local(dir.path().to_path_buf()));
    assert_eq!(local.files.len(), 2);

    // Offline with an empty cache: a typed error naming the repository.
    let err = RlaifVShards::resolve_with("openbmb/RLAIF-V-Dataset", &options).expect_err("empty");
    assert!(
        matches!(&err, DataError::NotInHubCache { repo, .. } if repo == "openbmb/RLAIF-V-Dataset"),
        "{err:?}"
    );
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");

    // Offline with the shards in the hub cache layout (refs/main -> snapshots/<commit>/).
    let repo = cache.path().join("datasets--openbmb--RLAIF-V-Dataset");
    let snapshot = repo.join("snapshots").join("0123abc");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs").join("main"), "0123abc").expect("ref");
    for file in &local.files {
        std::fs::copy(file, snapshot.join(name(file))).expect("copy");
    }
    let cached = RlaifVShards::resolve_with("openbmb/RLAIF-V-Dataset", &options).expect("cached");
    assert_eq!(
        cached.source,
        RlaifVSource::Hub {
            repo: "openbmb/RLAIF-V-Dataset".into(),
            revision: "main".into()
        }
    );
    let names: Vec<&str> = cached.files.iter().map(|p| name(p)).collect();
    assert_eq!(
        names,
        ["RLAIF-V-Dataset_000.parquet", "RLAIF-V-Dataset_001.parquet"]
    );
    let data = RlaifV::load_files(&cached.files, &RlaifVOptions::new()).expect("load");
    assert_eq!(data.len(), 13);

    let err = RlaifVShards::resolve_with("no such folder", &options).expect_err("invalid");
    assert!(matches!(err, DataError::InvalidArgument { .. }), "{err:?}");
}

#[test]
fn corrupt_row_group_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    let mut bytes = std::fs::read(&path).expect("read");
    // Scramble the start of the first row group's pages; the footer stays intact.
    for b in &mut bytes[4..600] {
        *b = b.wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&path, &bytes).expect("write");
    let err = RlaifV::load_files(&[&path], &RlaifVOptions::new()).expect_err("corrupt");
    match &err {
        DataError::ParquetRead {
            path: p, row_group, ..
        } => {
            assert_eq!(Path::new(p), path);
            assert_eq!(*row_group, 0);
        }
        other => panic!("expected ParquetRead, got {other:?}"),
    }
}

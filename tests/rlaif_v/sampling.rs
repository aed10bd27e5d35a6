//! The seeded per-source sample (`max_samples_per_source` with `sample_seed`).

use super::*;

/// Rows `r0`, `r1`, ... of `source` (JPEG and PNG in turn), with `replace` swapping in
/// malformed ones.
fn numbered(source: &str, n: usize, replace: impl Fn(usize) -> Option<TestRow>) -> Vec<TestRow> {
    (0..n)
        .map(|i| {
            replace(i).unwrap_or_else(|| {
                let image = if i % 2 == 0 {
                    jpeg(i as u8)
                } else {
                    png(i as u8)
                };
                row(source, &format!("r{i}"), image)
            })
        })
        .collect()
}

/// Writes `rows` as one snappy shard in row groups of `group_size` rows.
fn write_rows(path: &Path, rows: &[TestRow], group_size: usize) {
    let groups: Vec<Vec<TestRow>> = rows.chunks(group_size).map(<[_]>::to_vec).collect();
    write_shard(path, &groups, Compression::SNAPPY, true);
}

/// The row names (`r7`, `b3`, ...) of the kept samples of `source`, in sample order.
fn kept_names<'a>(data: &'a RlaifV, source: &str) -> Vec<&'a str> {
    data.samples()
        .iter()
        .filter(|s| s.origin_dataset == source)
        .map(|s| {
            s.question
                .strip_prefix("What is in ")
                .and_then(|q| q.strip_suffix('?'))
                .expect("a numbered question")
        })
        .collect()
}

/// Every row read is kept, skipped or capped.
fn assert_counts_add_up(data: &RlaifV) {
    let s = data.summary();
    assert_eq!(s.kept(), data.len(), "{s}");
    assert_eq!(s.rows_seen, s.kept() + s.skipped_total() + s.capped, "{s}");
}

/// Samples come out in file order: by shard (in the order given), row group and row.
fn assert_file_order(data: &RlaifV) {
    let files = &data.summary().files;
    let position = |s: &fedvlm::data::RlaifVSample| {
        let file = files
            .iter()
            .position(|f| f.as_path() == &*s.source_file)
            .expect("a file of the read");
        (file, s.row_group, s.row)
    };
    let positions: Vec<_> = data.samples().iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not in file order: {positions:?}"
    );
}

/// Two shards: alpha's 40 rows `r0..r39` (the first 25 in shard 0, in row groups of 10;
/// the rest in shard 1) interleaved with beta's 12 rows `b0..b11`.
fn write_sampling_dataset(dir: &Path) -> Vec<PathBuf> {
    let alpha = numbered(ALPHA, 40, |_| None);
    let beta: Vec<TestRow> = (0..12)
        .map(|i| row(BETA, &format!("b{i}"), png(100 + i as u8)))
        .collect();
    let mut mixed = Vec::new();
    let mut beta_rows = beta.iter();
    for (i, a) in alpha.iter().enumerate() {
        if i % 3 == 0
            && let Some(b) = beta_rows.next()
        {
            mixed.push(b.clone());
        }
        mixed.push(a.clone());
    }
    let paths = vec![
        dir.join("RLAIF-V-Dataset_000.parquet"),
        dir.join("RLAIF-V-Dataset_001.parquet"),
    ];
    let split = mixed
        .iter()
        .position(|r| r.question.as_deref() == Some("What is in r25?"))
        .expect("r25");
    write_rows(&paths[0], &mixed[..split], 10);
    write_rows(&paths[1], &mixed[split..], 10);
    paths
}

#[test]
fn seeded_sample_is_reproducible_capped_and_in_file_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_sampling_dataset(dir.path());
    let options = RlaifVOptions::new()
        .max_samples_per_source(5)
        .sample_seed(11);
    assert_eq!(options.sample_seed, Some(11));
    assert_eq!(RlaifVOptions::new().sample_seed, None);
    let a = RlaifV::load_files(&files, &options).expect("load");
    let b = RlaifV::load(dir.path(), &options).expect("again");
    assert_eq!(a.samples(), b.samples());
    assert_eq!(a.summary(), b.summary());

    assert_eq!(a.len(), 10);
    let counts: Vec<usize> = a.summary().kept_per_source.values().copied().collect();
    assert_eq!(counts, [5, 5]);
    let s = a.summary();
    assert_eq!((s.rows_seen, s.row_groups, s.files.len()), (52, 6, 2));
    assert_eq!((s.capped, s.skipped_total()), (42, 0));
    assert!(!s.stopped_early);
    assert_counts_add_up(&a);
    assert_file_order(&a);
    assert!(a.samples().iter().all(|s| s.decode_image().is_ok()));
    let text = s.to_string();
    assert!(text.contains("over the per-source cap: 42"), "{text}");

    // Without a seed, the same cap keeps the first rows of each source.
    let first = RlaifV::load_files(&files, &RlaifVOptions::new().max_samples_per_source(5))
        .expect("first rows");
    assert_eq!(kept_names(&first, ALPHA), ["r0", "r1", "r2", "r3", "r4"]);
    assert_eq!(kept_names(&first, BETA), ["b0", "b1", "b2", "b3", "b4"]);
    assert_eq!(first.summary().capped, 42);
    assert_counts_add_up(&first);
}

#[test]
fn seeded_sample_depends_on_the_seed_not_on_the_other_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_sampling_dataset(dir.path());
    let load = |files: &[PathBuf], seed| {
        RlaifV::load_files(
            files,
            &RlaifVOptions::new()
                .max_samples_per_source(5)
                .sample_seed(seed),
        )
        .expect("load")
    };
    let names = |seed| {
        let data = load(&files, seed);
        kept_names(&data, ALPHA)
            .into_iter()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let samples: Vec<Vec<String>> = (0..8).map(names).collect();
    let first_five = ["r0", "r1", "r2", "r3", "r4"];
    assert!(
        samples.iter().all(|s| s.len() == 5 && s != &first_five),
        "{samples:?}"
    );
    // Rows from both shards are drawn.
    let row_number = |name: &String| name[1..].parse::<usize>().expect("row number");
    assert!(samples.iter().flatten().any(|n| row_number(n) >= 25));
    assert!(samples.iter().flatten().any(|n| row_number(n) < 25));
    // Different seeds, different samples (8 draws of 5 of 40: equal ones would be a fluke).
    let mut distinct = samples.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), samples.len(), "{samples:?}");

    // Alpha's sample is the same with beta's rows removed, and in another file layout.
    let alone = tempfile::tempdir().expect("tempdir");
    let path = alone.path().join("RLAIF-V-Dataset_000.parquet");
    write_rows(&path, &numbered(ALPHA, 40, |_| None), 7);
    for seed in [0, 5] {
        let only_alpha = load(std::slice::from_ref(&path), seed);
        assert_eq!(kept_names(&only_alpha, ALPHA), samples[seed as usize]);
    }
}

/// Over 400 seeds, each of 40 rows is kept about 400 * 5 / 40 = 50 times (standard deviation
/// about 6.6; the bound is over 4.5 deviations).
#[test]
fn seeded_sample_is_uniform_over_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    write_rows(&path, &numbered(GAMMA, 40, |_| None), 16);
    let mut counts = [0usize; 40];
    for seed in 0..400 {
        let options = RlaifVOptions::new()
            .max_samples_per_source(5)
            .sample_seed(seed)
            .image_check(ImageCheck::None);
        let data = RlaifV::load_files(std::slice::from_ref(&path), &options).expect("load");
        assert_eq!(data.len(), 5);
        for sample in data.samples() {
            counts[sample.row] += 1;
        }
    }
    for (row, &count) in counts.iter().enumerate() {
        assert!(
            count.abs_diff(50) <= 30,
            "row {row} kept {count} times in 400 samples of 5 of 40: {counts:?}"
        );
    }
}

#[test]
fn seeded_sample_skips_and_counts_malformed_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    let garbage = || Img::Bytes(b"not an image".to_vec());
    let rows = numbered(ALPHA, 40, |i| match i {
        3 | 17 | 29 => Some(row(ALPHA, &format!("bad{i}"), garbage())),
        10 => Some(TestRow {
            question: None,
            ..row(ALPHA, "noq", jpeg(1))
        }),
        22 => Some(row(ALPHA, "null", Img::Null)),
        _ => None,
    });
    write_rows(&path, &rows, 12);
    let files = std::slice::from_ref(&path);
    let mut undecodable = Vec::new();
    for seed in 0..60 {
        let options = RlaifVOptions::new()
            .max_samples_per_source(5)
            .sample_seed(seed);
        let data = RlaifV::load_files(files, &options).expect("load");
        assert_eq!(data.len(), 5);
        assert_counts_add_up(&data);
        assert_file_order(&data);
        let names = kept_names(&data, ALPHA);
        assert!(names.iter().all(|n| n.starts_with('r')), "{names:?}");
        let s = data.summary();
        assert_eq!(s.rows_seen, 40);
        assert_eq!(s.skipped_for(RlaifVSkip::EmptyQuestion), 1);
        assert_eq!(s.skipped_for(RlaifVSkip::MissingImage), 1);
        // Row 3 is checked (the sample is not full yet); rows 17 and 29 only when drawn.
        let bad = s.skipped_for(RlaifVSkip::UndecodableImage);
        assert!((1..=3).contains(&bad), "{s}");
        assert_eq!(s.capped, 40 - 5 - 2 - bad);
        undecodable.push(bad);
    }
    // Images are checked only for rows drawn into the sample: mostly not rows 17 and 29.
    assert!(undecodable.contains(&1), "{undecodable:?}");
    assert!(undecodable.iter().any(|&n| n > 1), "{undecodable:?}");

    // Strict: the first malformed row found aborts the read, as without a seed.
    let err = RlaifV::load_files(
        files,
        &RlaifVOptions::new()
            .max_samples_per_source(5)
            .sample_seed(0)
            .strict(true),
    )
    .expect_err("strict");
    assert!(
        matches!(
            err,
            DataError::MalformedRow {
                row_group: 0,
                row: 3,
                reason: RlaifVSkip::UndecodableImage,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sample_seed_with_other_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    // No cap: the seed changes nothing.
    let plain = RlaifV::load(dir.path(), &RlaifVOptions::new()).expect("plain");
    let seeded = RlaifV::load(dir.path(), &RlaifVOptions::new().sample_seed(3)).expect("seeded");
    assert_eq!(plain.samples(), seeded.samples());
    assert_eq!(plain.summary(), seeded.summary());

    // A cap on the small dataset: the identity holds and no malformed row is kept.
    for seed in 0..20 {
        let data = RlaifV::load(
            dir.path(),
            &RlaifVOptions::new()
                .max_samples_per_source(2)
                .sample_seed(seed),
        )
        .expect("load");
        let counts: Vec<usize> = data.summary().kept_per_source.values().copied().collect();
        assert_eq!(counts, [2, 2, 2]);
        assert_counts_add_up(&data);
        assert_file_order(&data);
        assert!(data.samples().iter().all(|s| s.decode_image().is_ok()));
        assert_eq!(data.summary().skipped_for(RlaifVSkip::MissingImage), 2);
    }

    // max_samples still stops the read: here after alpha's, beta's and gamma's first rows.
    let quick = RlaifV::load(
        dir.path(),
        &RlaifVOptions::new()
            .max_samples(3)
            .max_samples_per_source(2)
            .sample_seed(1),
    )
    .expect("quick");
    assert_eq!(quick.len(), 3);
    assert!(quick.summary().stopped_early);
    assert_eq!(quick.summary().rows_seen, 3);
    assert_counts_add_up(&quick);
}

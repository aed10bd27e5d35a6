//! RLAIF-V reader and partitions on small parquet shards written here in RLAIF-V's schema
//! (the `image` struct column holds real JPEG and PNG images encoded by the test).

mod common;
use common::offline_hub;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fedvlm::FedError;
use fedvlm::data::{
    DataError, ImageCheck, RlaifV, RlaifVOptions, RlaifVPartitionOptions, RlaifVScheme,
    RlaifVShards, RlaifVSkip, RlaifVSource, partition_rlaif_v, rlaif_v_shards,
};
use image::{DynamicImage, ImageFormat, RgbImage};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// RLAIF-V's schema as pyarrow writes it for a `datasets` table with an `Image` feature.
const SCHEMA: &str = "
message schema {
  optional binary ds_name (STRING);
  optional group image {
    optional binary bytes;
    optional binary path (STRING);
  }
  optional binary question (STRING);
  optional binary chosen (STRING);
  optional binary rejected (STRING);
  optional binary origin_dataset (STRING);
  optional binary origin_split (STRING);
  optional int64 idx;
  optional binary image_path (STRING);
}";

/// The same without `origin_dataset`.
const SCHEMA_NO_ORIGIN: &str = "
message schema {
  optional group image {
    optional binary bytes;
    optional binary path (STRING);
  }
  optional binary question (STRING);
  optional binary chosen (STRING);
}";

#[derive(Clone)]
enum Img {
    /// `image` itself is null.
    Null,
    /// `image` is a struct whose `bytes` is null.
    NoBytes,
    /// Encoded bytes.
    Bytes(Vec<u8>),
}

#[derive(Clone)]
struct TestRow {
    question: Option<String>,
    chosen: Option<String>,
    origin: Option<String>,
    image: Img,
}

fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 7) as u8 ^ seed,
            (y * 13) as u8,
            seed.wrapping_mul(31).wrapping_add((x * y) as u8),
        ])
    })
}

fn encode(img: RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut buf), format)
        .expect("encode");
    buf
}

fn jpeg(seed: u8) -> Img {
    Img::Bytes(encode(pattern(24, 16, seed), ImageFormat::Jpeg))
}

fn png(seed: u8) -> Img {
    Img::Bytes(encode(pattern(16, 12, seed), ImageFormat::Png))
}

/// A PNG cut inside its pixel data: the header reads, the pixels do not.
fn truncated_png() -> Img {
    let noise = RgbImage::from_fn(64, 64, |x, y| {
        let v =
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
        image::Rgb([(v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8])
    });
    let bytes = encode(noise, ImageFormat::Png);
    Img::Bytes(bytes[..bytes.len() / 2].to_vec())
}

fn row(source: &str, name: &str, image: Img) -> TestRow {
    TestRow {
        question: Some(format!("What is in {name}?")),
        chosen: Some(format!("{name} shows a pattern.")),
        origin: Some(source.to_string()),
        image,
    }
}

/// Writes one optional BYTE_ARRAY leaf: `None` is null at definition level `null_level`.
fn write_column(
    rg: &mut parquet::file::writer::SerializedRowGroupWriter<'_, std::fs::File>,
    values: &[Option<Vec<u8>>],
    null_levels: &[i16],
    max_level: i16,
) {
    let mut col = rg.next_column().expect("next column").expect("a column");
    let present: Vec<ByteArray> = values
        .iter()
        .flatten()
        .map(|v| ByteArray::from(v.clone()))
        .collect();
    let defs: Vec<i16> = values
        .iter()
        .zip(null_levels)
        .map(|(v, &null)| if v.is_some() { max_level } else { null })
        .collect();
    col.typed::<ByteArrayType>()
        .write_batch(&present, Some(&defs), None)
        .expect("write column");
    col.close().expect("close column");
}

/// Writes `row_groups` as one parquet file in RLAIF-V's schema (or the schema without
/// `origin_dataset` when `with_origin` is false).
fn write_shard(
    path: &Path,
    row_groups: &[Vec<TestRow>],
    compression: Compression,
    with_origin: bool,
) {
    let schema = if with_origin {
        SCHEMA
    } else {
        SCHEMA_NO_ORIGIN
    };
    let schema = Arc::new(parse_message_type(schema).expect("schema"));
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = std::fs::File::create(path).expect("create shard");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let text = |s: &Option<String>| s.as_ref().map(|s| s.as_bytes().to_vec());
    for rows in row_groups {
        let n = rows.len();
        let zeros = vec![0i16; n];
        let mut rg = writer.next_row_group().expect("row group");
        if with_origin {
            let ds: Vec<_> = (0..n).map(|_| Some(b"RLAIF-V".to_vec())).collect();
            write_column(&mut rg, &ds, &zeros, 1);
        }
        // image.bytes / image.path: level 0 = image null, 1 = field null, 2 = present.
        let image_null: Vec<i16> = rows
            .iter()
            .map(|r| i16::from(!matches!(r.image, Img::Null)))
            .collect();
        let bytes: Vec<_> = rows
            .iter()
            .map(|r| match &r.image {
                Img::Bytes(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        write_column(&mut rg, &bytes, &image_null, 2);
        let paths: Vec<_> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| match r.image {
                Img::Null => None,
                _ => Some(format!("img_{i}.jpg").into_bytes()),
            })
            .collect();
        write_column(&mut rg, &paths, &image_null, 2);
        let questions: Vec<_> = rows.iter().map(|r| text(&r.question)).collect();
        write_column(&mut rg, &questions, &zeros, 1);
        let chosen: Vec<_> = rows.iter().map(|r| text(&r.chosen)).collect();
        write_column(&mut rg, &chosen, &zeros, 1);
        if with_origin {
            let rejected: Vec<_> = (0..n)
                .map(|i| Some(format!("wrong {i}").into_bytes()))
                .collect();
            write_column(&mut rg, &rejected, &zeros, 1);
            let origins: Vec<_> = rows.iter().map(|r| text(&r.origin)).collect();
            write_column(&mut rg, &origins, &zeros, 1);
            let split: Vec<_> = (0..n).map(|_| Some(b"train".to_vec())).collect();
            write_column(&mut rg, &split, &zeros, 1);
            let mut col = rg.next_column().expect("next column").expect("idx");
            let idx: Vec<i64> = (0..n as i64).collect();
            col.typed::<Int64Type>()
                .write_batch(&idx, Some(&vec![1i16; n]), None)
                .expect("idx");
            col.close().expect("close idx");
            let image_path: Vec<_> = (0..n).map(|_| None).collect();
            write_column(&mut rg, &image_path, &zeros, 1);
        }
        rg.close().expect("close row group");
    }
    writer.close().expect("close writer");
}

const ALPHA: &str = "alpha_vqa";
const BETA: &str = "beta-caps";
const GAMMA: &str = "gamma";

/// Two shards (snappy, zstd), two row groups each, 20 rows: 13 usable (alpha 5, beta 4,
/// gamma 4) and one malformed row of each kind (7 in all).
fn write_dataset(dir: &Path) {
    let empty_question = TestRow {
        question: Some("   ".into()),
        ..row(ALPHA, "q", jpeg(90))
    };
    let garbage = Img::Bytes(b"this is not an image at all".to_vec());
    let no_answer = TestRow {
        chosen: None,
        ..row(GAMMA, "c", jpeg(91))
    };
    let no_source = TestRow {
        origin: Some(String::new()),
        ..row(BETA, "o", png(92))
    };
    let shard0 = vec![
        vec![
            row(ALPHA, "a0", jpeg(1)),
            row(BETA, "b0", png(2)),
            row(GAMMA, "g0", jpeg(3)),
            row(ALPHA, "a1", png(4)),
            row(BETA, "b1", jpeg(5)),
        ],
        vec![
            row(GAMMA, "g1", png(6)),
            empty_question,
            row(BETA, "bad", garbage),
            row(GAMMA, "null", Img::Null),
            row(ALPHA, "a2", jpeg(7)),
        ],
    ];
    let shard1 = vec![
        vec![
            row(ALPHA, "a3", jpeg(8)),
            row(GAMMA, "nobytes", Img::NoBytes),
            row(BETA, "b2", png(9)),
            no_answer,
            row(GAMMA, "g2", jpeg(10)),
        ],
        vec![
            row(ALPHA, "cut", truncated_png()),
            row(ALPHA, "a4", png(11)),
            no_source,
            row(BETA, "b3", jpeg(12)),
            row(GAMMA, "g3", png(13)),
        ],
    ];
    // Written in reverse order, next to a file that is not a shard.
    write_shard(
        &dir.join("RLAIF-V-Dataset_001.parquet"),
        &shard1,
        Compression::ZSTD(ZstdLevel::default()),
        true,
    );
    write_shard(
        &dir.join("RLAIF-V-Dataset_000.parquet"),
        &shard0,
        Compression::SNAPPY,
        true,
    );
    std::fs::write(dir.join("README.md"), "not a shard").expect("readme");
}

fn dataset() -> (tempfile::TempDir, RlaifV) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_dataset(dir.path());
    let data = RlaifV::load(dir.path(), &RlaifVOptions::new()).expect("load");
    (dir, data)
}

fn name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
}

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

/// Every client's train and test are disjoint, ascending, and together its samples.
fn check_clients(data: &RlaifV, clients: &[fedvlm::data::RlaifVClient]) {
    let mut all: Vec<usize> = Vec::new();
    for (c, client) in clients.iter().enumerate() {
        assert_eq!(client.client, c);
        assert!(client.train.windows(2).all(|w| w[0] < w[1]));
        assert!(client.test.windows(2).all(|w| w[0] < w[1]));
        assert!(client.train.iter().all(|i| !client.test.contains(i)));
        assert!(!client.train.is_empty() && !client.test.is_empty());
        for &i in client.train.iter().chain(&client.test) {
            let source = &data.samples()[i].origin_dataset;
            assert!(
                client.sources.contains(source),
                "{source} not in {:?}",
                client.sources
            );
        }
        all.extend(client.train.iter().chain(&client.test));
    }
    all.sort_unstable();
    let before = all.len();
    all.dedup();
    assert_eq!(all.len(), before, "clients overlap");
}

#[test]
fn partition_one_client_per_source() {
    let (_dir, data) = dataset();
    let options = RlaifVPartitionOptions::new(RlaifVScheme::BySource).test_fraction(0.25);
    let clients = partition_rlaif_v(&data, &options).expect("partition");
    assert_eq!(clients.len(), 3);
    let sources: Vec<&[String]> = clients.iter().map(|c| c.sources.as_slice()).collect();
    assert_eq!(
        sources,
        [[ALPHA.to_string()], [BETA.to_string()], [GAMMA.to_string()]]
    );
    let sizes: Vec<(usize, usize)> = clients
        .iter()
        .map(|c| (c.train.len(), c.test.len()))
        .collect();
    // round(0.25 * 5) = 1, round(0.25 * 4) = 1.
    assert_eq!(sizes, [(4, 1), (3, 1), (3, 1)]);
    check_clients(&data, &clients);
    assert_eq!(clients.iter().map(|c| c.len()).sum::<usize>(), data.len());
}

#[test]
fn partition_sources_grouped_into_two_clients() {
    let (_dir, data) = dataset();
    let grouped = RlaifVScheme::GroupedBySource { num_clients: 2 };
    let clients =
        partition_rlaif_v(&data, &RlaifVPartitionOptions::new(grouped)).expect("partition");
    // Largest source first (alpha, 5) to client 0; beta (4) to the empty client 1; gamma (4)
    // to the smaller client, 1.
    let sources: Vec<Vec<&str>> = clients
        .iter()
        .map(|c| c.sources.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(sources, [vec![ALPHA], vec![BETA, GAMMA]]);
    assert_eq!(clients[0].len(), 5);
    assert_eq!(clients[1].len(), 8);
    check_clients(&data, &clients);

    let too_many = RlaifVScheme::GroupedBySource { num_clients: 4 };
    let err = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(too_many)).expect_err("4 > 3");
    assert!(
        matches!(
            err,
            FedError::Data(DataError::InvalidArgument {
                field: "num_clients",
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn iid_partition_is_reproducible_by_seed() {
    let (_dir, data) = dataset();
    let scheme = |seed| RlaifVScheme::Iid {
        num_clients: 2,
        seed,
    };
    let a = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(7))).expect("a");
    let b = partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(7))).expect("b");
    assert_eq!(a, b);
    assert_eq!(a.iter().map(|c| c.len()).collect::<Vec<_>>(), [7, 6]);
    check_clients(&data, &a);
    let differs = (8..12).any(|seed| {
        partition_rlaif_v(&data, &RlaifVPartitionOptions::new(scheme(seed))).expect("c") != a
    });
    assert!(differs, "the seed has no effect");
}

#[test]
fn train_test_split_and_client_cap() {
    let (_dir, data) = dataset();
    let options = RlaifVPartitionOptions::new(RlaifVScheme::BySource)
        .test_fraction(0.5)
        .seed(3);
    let a = partition_rlaif_v(&data, &options).expect("a");
    assert_eq!(a, partition_rlaif_v(&data, &options).expect("again"));
    // round(0.5 * 5) = 3 (ties away from zero), round(0.5 * 4) = 2.
    let tests: Vec<usize> = a.iter().map(|c| c.test.len()).collect();
    assert_eq!(tests, [3, 2, 2]);
    let other = partition_rlaif_v(&data, &options.clone().seed(4)).expect("b");
    assert_eq!(
        other.iter().map(|c| c.len()).collect::<Vec<_>>(),
        a.iter().map(|c| c.len()).collect::<Vec<_>>()
    );

    let capped =
        partition_rlaif_v(&data, &options.clone().max_samples_per_client(3)).expect("capped");
    assert!(capped.iter().all(|c| c.len() == 3));
    check_clients(&data, &capped);

    let err = partition_rlaif_v(&data, &options.clone().test_fraction(1.0)).expect_err("fraction");
    assert!(matches!(err, FedError::Partition(_)), "{err:?}");
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

//! RLAIF-V reader and partitions on small parquet shards written here in RLAIF-V's schema
//! (the `image` struct column holds real JPEG and PNG images encoded by the test).

//!
//! * `reader`: shards, samples, malformed rows, image checks, typed errors.
//! * `partition`: clients by source, grouped, IID, train/test split.
//! * `sampling`: the seeded per-source sample.

#[path = "../common/mod.rs"]
mod common;
use common::offline_hub;
use common::rlaif_shards::encode_image as encode;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use fedvlm::FedError;
use fedvlm::data::{
    DataError, ImageCheck, RlaifV, RlaifVOptions, RlaifVPartitionOptions, RlaifVScheme,
    RlaifVShards, RlaifVSkip, RlaifVSource, partition_rlaif_v, rlaif_v_shards,
};
use image::{ImageFormat, RgbImage};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

mod partition;
mod reader;
mod sampling;

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

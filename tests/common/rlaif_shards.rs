//! A tiny RLAIF-V parquet shard in the hub's schema, written by the tests: two source datasets,
//! JPEG and PNG images.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use image::{DynamicImage, ImageFormat, RgbImage};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

/// The columns of RLAIF-V that the reader needs, as pyarrow writes them.
pub const RLAIF_V_SCHEMA: &str = "
message schema {
  optional group image {
    optional binary bytes;
    optional binary path (STRING);
  }
  optional binary question (STRING);
  optional binary chosen (STRING);
  optional binary origin_dataset (STRING);
}";

fn encoded(seed: u8, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(40, 28, |x, y| {
        image::Rgb([
            (x * 7) as u8 ^ seed,
            (y * 13) as u8,
            seed.wrapping_mul(31).wrapping_add((x * y) as u8),
        ])
    });
    encode_image(img, format)
}

/// `img` encoded as `format` (JPEG or PNG bytes).
pub fn encode_image(img: RgbImage, format: ImageFormat) -> Vec<u8> {
    let mut buf = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut buf), format)
        .expect("encode");
    buf
}

fn write_column(
    rg: &mut SerializedRowGroupWriter<'_, std::fs::File>,
    values: &[Vec<u8>],
    level: i16,
) {
    let mut col = rg.next_column().expect("next column").expect("a column");
    let present: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(v.clone())).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&present, Some(&vec![level; values.len()]), None)
        .expect("write column");
    col.close().expect("close column");
}

/// Image bytes, question, chosen answer, source.
type Row = (Vec<u8>, String, String, String);

/// One shard: 8 rows of source `alpha_vqa` (JPEG) and 8 of `beta-caps` (PNG).
pub fn write_dataset(dir: &Path) {
    let mut rows: Vec<Row> = Vec::new();
    let words = ["red", "blue", "green", "cat", "dog", "tree", "car", "sky"];
    for i in 0..16u8 {
        let (source, format) = if i % 2 == 0 {
            ("alpha_vqa", ImageFormat::Jpeg)
        } else {
            ("beta-caps", ImageFormat::Png)
        };
        let w = words[(i as usize) % words.len()];
        rows.push((
            encoded(i, format),
            format!("What colour is the {w}?"),
            format!("The {w} is shown in picture {i}."),
            source.to_string(),
        ));
    }
    let schema = Arc::new(parse_message_type(RLAIF_V_SCHEMA).expect("schema"));
    let props = Arc::new(WriterProperties::builder().build());
    let path = dir.join("RLAIF-V-Dataset_000.parquet");
    let file = std::fs::File::create(path).expect("create shard");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let mut rg = writer.next_row_group().expect("row group");
    let col = |f: &dyn Fn(&Row) -> Vec<u8>| -> Vec<Vec<u8>> { rows.iter().map(f).collect() };
    write_column(&mut rg, &col(&|r| r.0.clone()), 2);
    write_column(&mut rg, &col(&|_| b"img.jpg".to_vec()), 2);
    write_column(&mut rg, &col(&|r| r.1.clone().into_bytes()), 1);
    write_column(&mut rg, &col(&|r| r.2.clone().into_bytes()), 1);
    write_column(&mut rg, &col(&|r| r.3.clone().into_bytes()), 1);
    rg.close().expect("close row group");
    writer.close().expect("close writer");
}

/// A tiny image (`side` x `side` PNG, a few hundred bytes).
fn small_png(seed: u32, side: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([
            (x * 31 + seed) as u8,
            (y * 17 + seed * 7) as u8,
            ((x ^ y) * 5 + seed * 3) as u8,
        ])
    });
    let mut buf = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut buf), ImageFormat::Png)
        .expect("encode");
    buf
}

/// One shard `RLAIF-V-Dataset_000.parquet` of `rows` rows in row groups of 512, spread over
/// the sources `sources` in turn, with `side` x `side` PNG images (a few hundred bytes each),
/// short questions and answers.
pub fn write_rows(dir: &Path, rows: usize, sources: &[&str], side: u32) {
    write_rows_with_answers(dir, rows, sources, side, 0);
}

/// [`write_rows`] whose answers go on for `extra_words` more words (RLAIF-V's chosen answers
/// are often several hundred bytes).
pub fn write_rows_with_answers(
    dir: &Path,
    rows: usize,
    sources: &[&str],
    side: u32,
    extra_words: usize,
) {
    let schema = Arc::new(parse_message_type(RLAIF_V_SCHEMA).expect("schema"));
    let props = Arc::new(WriterProperties::builder().build());
    let path = dir.join("RLAIF-V-Dataset_000.parquet");
    let file = std::fs::File::create(path).expect("create shard");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    let words = ["red", "blue", "green", "cat", "dog", "tree", "car", "sky"];
    for start in (0..rows).step_by(512) {
        let end = (start + 512).min(rows);
        let mut group: Vec<Row> = Vec::with_capacity(end - start);
        for i in start..end {
            let w = words[i % words.len()];
            group.push((
                small_png(i as u32, side),
                format!("What is the {w} in {i}?"),
                std::iter::once(format!("A {w}."))
                    .chain((0..extra_words).map(|k| words[(i + k) % words.len()].to_string()))
                    .collect::<Vec<_>>()
                    .join(" "),
                sources[i % sources.len()].to_string(),
            ));
        }
        let mut rg = writer.next_row_group().expect("row group");
        let col = |f: &dyn Fn(&Row) -> Vec<u8>| -> Vec<Vec<u8>> { group.iter().map(f).collect() };
        write_column(&mut rg, &col(&|r| r.0.clone()), 2);
        write_column(&mut rg, &col(&|_| b"img.png".to_vec()), 2);
        write_column(&mut rg, &col(&|r| r.1.clone().into_bytes()), 1);
        write_column(&mut rg, &col(&|r| r.2.clone().into_bytes()), 1);
        write_column(&mut rg, &col(&|r| r.3.clone().into_bytes()), 1);
        rg.close().expect("close row group");
    }
    writer.close().expect("close writer");
}

//! A tiny OK-VQA parquet file in the hub's schema (`lmms-lab/OK-VQA`, as `datasets` writes it:
//! see `tests/fixtures/okvqa/schema.txt`), written by the tests: well-formed rows with JPEG and
//! PNG images and ten answers, plus malformed ones of every kind.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{DynamicImage, ImageFormat, RgbImage};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

/// The schema pyarrow writes for the hub card's features (`schema.txt`, field ids dropped).
pub const OKVQA_SCHEMA: &str = "
message schema {
  optional binary question_id (STRING);
  optional group image {
    optional binary bytes;
    optional binary path (STRING);
  }
  optional binary question (STRING);
  optional group answers (LIST) {
    repeated group list {
      optional binary element (STRING);
    }
  }
  optional binary question_type (STRING);
  optional binary answer_type (STRING);
}";

/// `tests/fixtures/okvqa/` (made by `scripts/make_okvqa_fixture.py` with `datasets`).
pub fn okvqa_fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/okvqa")
}

/// One row: `None` is a null value.
#[derive(Debug, Clone)]
pub struct OkVqaRow {
    pub question_id: String,
    pub image: Option<Vec<u8>>,
    pub question: Option<String>,
    pub answers: Option<Vec<Option<String>>>,
    pub question_type: String,
}

/// A small encoded image.
pub fn encoded(seed: u8, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(24, 18, |x, y| {
        image::Rgb([
            (x * 9) as u8 ^ seed,
            (y * 11) as u8,
            seed.wrapping_mul(37).wrapping_add((x + y) as u8),
        ])
    });
    let mut buf = Vec::new();
    DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut buf), format)
        .expect("encode");
    buf
}

/// `good` well-formed rows: row `i`'s answers are 6 x `word(i)` and 4 x `other`, so its
/// target is `word(i)`.
pub fn good_rows(good: usize) -> Vec<OkVqaRow> {
    let words = ["red", "blue", "green", "cat", "dog", "tree", "car", "sky"];
    (0..good)
        .map(|i| {
            let w = words[i % words.len()];
            let format = if i % 2 == 0 {
                ImageFormat::Jpeg
            } else {
                ImageFormat::Png
            };
            let mut answers = vec![Some(w.to_string()); 6];
            answers.extend(vec![Some("other".to_string()); 4]);
            OkVqaRow {
                question_id: format!("{}", 1000 + i),
                image: Some(encoded(i as u8, format)),
                question: Some(format!("What is shown in picture {i}?")),
                answers: Some(answers),
                question_type: "one".into(),
            }
        })
        .collect()
}

/// One malformed row of each kind, in the order: missing image, undecodable image, blank
/// question, no answers (null list), empty list, nine answers, a null answer.
pub fn malformed_rows() -> Vec<OkVqaRow> {
    let ten = || Some(vec![Some("yes".to_string()); 10]);
    let base = |id: &str| OkVqaRow {
        question_id: id.into(),
        image: Some(encoded(200, ImageFormat::Png)),
        question: Some("Why?".into()),
        answers: ten(),
        question_type: "other".into(),
    };
    let mut null_answer = vec![Some("a".to_string()); 9];
    null_answer.push(None);
    vec![
        OkVqaRow {
            image: None,
            ..base("9001")
        },
        OkVqaRow {
            image: Some(b"not an image at all".to_vec()),
            ..base("9002")
        },
        OkVqaRow {
            question: Some("  ".into()),
            ..base("9003")
        },
        OkVqaRow {
            answers: None,
            ..base("9004")
        },
        OkVqaRow {
            answers: Some(Vec::new()),
            ..base("9005")
        },
        OkVqaRow {
            answers: Some(vec![Some("a".into()); 9]),
            ..base("9006")
        },
        OkVqaRow {
            answers: Some(null_answer),
            ..base("9007")
        },
    ]
}

fn write_leaf(
    rg: &mut SerializedRowGroupWriter<'_, std::fs::File>,
    values: &[Vec<u8>],
    def: &[i16],
    rep: Option<&[i16]>,
) {
    let mut col = rg.next_column().expect("next column").expect("a column");
    let values: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(v.clone())).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(def), rep)
        .expect("write column");
    col.close().expect("close column");
}

/// A nullable string column: `(values, def levels)`.
fn optional(values: impl Iterator<Item = Option<Vec<u8>>>, level: i16) -> (Vec<Vec<u8>>, Vec<i16>) {
    let (mut present, mut def) = (Vec::new(), Vec::new());
    for v in values {
        match v {
            Some(v) => {
                present.push(v);
                def.push(level);
            }
            None => def.push(level - 1),
        }
    }
    (present, def)
}

/// Writes `rows` into `path`, `group` rows per row group.
pub fn write_okvqa(path: &Path, rows: &[OkVqaRow], group: usize) {
    let schema = Arc::new(parse_message_type(OKVQA_SCHEMA).expect("schema"));
    let props = Arc::new(WriterProperties::builder().build());
    let file = std::fs::File::create(path).expect("create file");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    for chunk in rows.chunks(group.max(1)) {
        let mut rg = writer.next_row_group().expect("row group");
        let text = |s: &String| s.clone().into_bytes();
        let (v, d) = optional(chunk.iter().map(|r| Some(text(&r.question_id))), 1);
        write_leaf(&mut rg, &v, &d, None);
        // image.bytes and image.path: a null image is def 0; bytes present def 2.
        let (v, d) = optional(chunk.iter().map(|r| r.image.clone()), 2);
        write_leaf(&mut rg, &v, &d, None);
        let (v, d) = optional(
            chunk
                .iter()
                .map(|r| r.image.as_ref().map(|_| b"img.jpg".to_vec())),
            2,
        );
        write_leaf(&mut rg, &v, &d, None);
        let (v, d) = optional(chunk.iter().map(|r| r.question.as_ref().map(text)), 1);
        write_leaf(&mut rg, &v, &d, None);
        // answers.list.element: null list def 0, empty list def 1, null element def 2,
        // element def 3; rep 0 starts a row, 1 continues its list.
        let (mut values, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
        for r in chunk {
            match &r.answers {
                None => {
                    def.push(0);
                    rep.push(0);
                }
                Some(list) if list.is_empty() => {
                    def.push(1);
                    rep.push(0);
                }
                Some(list) => {
                    for (i, a) in list.iter().enumerate() {
                        rep.push(if i == 0 { 0 } else { 1 });
                        match a {
                            Some(a) => {
                                values.push(a.clone().into_bytes());
                                def.push(3);
                            }
                            None => def.push(2),
                        }
                    }
                }
            }
        }
        write_leaf(&mut rg, &values, &def, Some(&rep));
        let (v, d) = optional(chunk.iter().map(|r| Some(text(&r.question_type))), 1);
        write_leaf(&mut rg, &v, &d, None);
        let (v, d) = optional(chunk.iter().map(|_| Some(b"other".to_vec())), 1);
        write_leaf(&mut rg, &v, &d, None);
        rg.close().expect("close row group");
    }
    writer.close().expect("close writer");
}

/// A folder laid out as the hub repository: `data/val2014-00000-of-00001.parquet` holding
/// `good` well-formed rows with the malformed ones spread among them (row groups of 5).
pub fn write_okvqa_dataset(dir: &Path, good: usize) -> Vec<OkVqaRow> {
    let mut rows = good_rows(good);
    for (k, bad) in malformed_rows().into_iter().enumerate() {
        let at = (k * 3 + 1).min(rows.len());
        rows.insert(at, bad);
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data folder");
    write_okvqa(&data.join("val2014-00000-of-00001.parquet"), &rows, 5);
    rows
}

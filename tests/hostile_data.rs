//! Hostile bytes for the dataset readers: the CIFAR-10 binary batches, RLAIF-V parquet shards,
//! and image decoding (RLAIF-V's encoded images, Florence-2's `load_image` and
//! `preprocessor_config.json`, the CHW transform). Seeded mutations of valid inputs never panic
//! and come back as typed errors naming the file.

mod common;
use common::mutate::{Mutation, Report, Rng, crc32, random_set, truncations};
use common::rlaif_shards::{RLAIF_V_SCHEMA, encode_image as encode};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fedvlm::data::{
    CIFAR10_FILE_BYTES, CIFAR10_RECORD_BYTES, Cifar10, ImageCheck, ImageTransform, RlaifVOptions,
    RlaifVSample, read_rlaif_v,
};
use fedvlm::models::florence2::processor::{
    ImageConfig, load_image, preprocess_images, preprocess_rgb8,
};
use image::{ImageFormat, RgbImage};
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;

const SEED: u64 = 0x5EED_0002;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/florence2_text")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10

/// Bytes of each batch file's head that the mutations work on (two records); the rest of the
/// file stays zeros (label 0, black image), written sparse.
const WINDOW: usize = 2 * CIFAR10_RECORD_BYTES;

/// Rewrites `path` as `head` followed by zeros up to `head.len() + tail` bytes.
fn write_sparse(path: &Path, head: &[u8], tail: u64) {
    let mut file = File::create(path).expect("create");
    file.write_all(head).expect("write");
    file.set_len(head.len() as u64 + tail).expect("set_len");
}

fn cifar_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in Cifar10::TRAIN_FILES.iter().chain([&Cifar10::TEST_FILE]) {
        write_sparse(&dir.path().join(name), &[], CIFAR10_FILE_BYTES);
    }
    dir
}

#[test]
fn hostile_cifar10_batches_are_typed_errors() {
    let dir = cifar_dir();
    let head = vec![0u8; WINDOW];
    let tail = CIFAR10_FILE_BYTES - WINDOW as u64;
    Cifar10::load(dir.path()).expect("the valid (all-zero) batches load");

    let mut cases: Vec<Mutation> = random_set(SEED, WINDOW, &[0, CIFAR10_RECORD_BYTES], 16);
    cases.extend(truncations(WINDOW, 4, 4));
    for label in [10, 11, 0x7f, 0xff] {
        cases.push(Mutation::SetByte {
            offset: CIFAR10_RECORD_BYTES,
            value: label,
        });
    }
    let mut report = Report::new("Cifar10::load", SEED);
    for (i, mutation) in cases.iter().enumerate() {
        // Mostly the first train file; every fourth case the test file (read last, so a valid
        // mutation there costs a full read of all six files).
        let name = if i % 4 != 3 {
            Cifar10::TRAIN_FILES[0]
        } else {
            Cifar10::TEST_FILE
        };
        let path = dir.path().join(name);
        write_sparse(&path, &mutation.apply(&head), tail);
        let shown = path.display().to_string();
        report.run(mutation, Some(&shown), || Cifar10::load(dir.path()));
        write_sparse(&path, &head, tail);
    }

    // Whole-file cases: empty, one byte short, one byte long, missing, a folder.
    let path = dir.path().join(Cifar10::TRAIN_FILES[2]);
    let shown = path.display().to_string();
    for (label, len) in [
        ("empty file", 0),
        ("one byte short", CIFAR10_FILE_BYTES - 1),
        ("one byte long", CIFAR10_FILE_BYTES + 1),
    ] {
        write_sparse(&path, &[], len);
        report.run_labelled(label, label, Some(&shown), || Cifar10::load(dir.path()));
    }
    std::fs::remove_file(&path).expect("remove");
    report.run_labelled("missing file", "missing file", Some(&shown), || {
        Cifar10::load(dir.path())
    });
    std::fs::create_dir(&path).expect("mkdir");
    report.run_labelled("a folder", "a folder", Some(&shown), || {
        Cifar10::load(dir.path())
    });
    std::fs::remove_dir(&path).expect("rmdir");
    write_sparse(&path, &[], CIFAR10_FILE_BYTES);

    // batches.meta.txt: not UTF-8, too few and too many names, only blank lines.
    let meta = dir.path().join(Cifar10::META_FILE);
    let shown = meta.display().to_string();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    let metas: [(&str, Vec<u8>); 4] = [
        ("meta not UTF-8", vec![0xff, 0xfe, b'\n', 0x80]),
        ("meta 9 names", names.replace("truck\n", "").into_bytes()),
        ("meta 11 names", format!("{names}extra\n").into_bytes()),
        ("meta blank", b"\n\n  \n".to_vec()),
    ];
    for (label, bytes) in metas {
        std::fs::write(&meta, bytes).expect("write meta");
        report.run_labelled(label, label, Some(&shown), || Cifar10::load(dir.path()));
    }
    report.finish();
}

// ---------------------------------------------------------------------------------------------
// RLAIF-V parquet (a shard in RLAIF-V's schema, as `tests/rlaif_v/main.rs` writes them;
// the columns the reader needs: `RLAIF_V_SCHEMA`)

fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 7) as u8 ^ seed, (y * 13) as u8, (x * y) as u8])
    })
}

fn write_column(rg: &mut SerializedRowGroupWriter<'_, File>, values: &[Vec<u8>], level: i16) {
    let mut col = rg.next_column().expect("next column").expect("a column");
    let present: Vec<ByteArray> = values.iter().map(|v| ByteArray::from(v.clone())).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&present, Some(&vec![level; values.len()]), None)
        .expect("write column");
    col.close().expect("close column");
}

/// A shard of two row groups of three rows each (JPEG and PNG images).
fn write_shard(path: &Path, compression: Compression) {
    let schema = Arc::new(parse_message_type(RLAIF_V_SCHEMA).expect("schema"));
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = File::create(path).expect("create shard");
    let mut writer = SerializedFileWriter::new(file, schema, props).expect("writer");
    for group in 0..2u8 {
        let mut rg = writer.next_row_group().expect("row group");
        let images: Vec<Vec<u8>> = (0..3u8)
            .map(|i| match i % 2 {
                0 => encode(pattern(12, 8, group * 3 + i), ImageFormat::Jpeg),
                _ => encode(pattern(8, 6, group * 3 + i), ImageFormat::Png),
            })
            .collect();
        write_column(&mut rg, &images, 2);
        let paths: Vec<Vec<u8>> = (0..3).map(|i| format!("img_{i}.png").into()).collect();
        write_column(&mut rg, &paths, 2);
        let text = |f: &dyn Fn(u8) -> String| -> Vec<Vec<u8>> {
            (0..3u8).map(|i| f(group * 3 + i).into_bytes()).collect()
        };
        write_column(&mut rg, &text(&|i| format!("What is in image {i}?")), 1);
        write_column(
            &mut rg,
            &text(&|i| format!("Image {i} shows a pattern.")),
            1,
        );
        write_column(&mut rg, &text(&|i| format!("source_{}", i % 2)), 1);
        rg.close().expect("close row group");
    }
    writer.close().expect("close writer");
}

fn check_parquet(compression: Compression, seed: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("RLAIF-V-Dataset_000.parquet");
    write_shard(&path, compression);
    let valid = std::fs::read(&path).expect("read shard");
    let options = [
        RlaifVOptions::new(),
        RlaifVOptions::new()
            .strict(true)
            .image_check(ImageCheck::Decode),
        RlaifVOptions::new()
            .image_check(ImageCheck::Header)
            .max_samples_per_source(1)
            .sample_seed(3),
    ];
    let read = |options: &RlaifVOptions| read_rlaif_v(&[&path], options, |_| {});
    let summary = read(&options[1]).expect("the valid shard reads");
    assert_eq!(summary.kept(), 6);

    let n = valid.len();
    let hot = [0, 4, n.saturating_sub(8), n.saturating_sub(4)];
    let mut cases = truncations(n, 16, 120);
    cases.extend(random_set(seed, n, &hot, 300));
    for value in common::mutate::HUGE {
        cases.push(Mutation::SetU32 {
            offset: n - 8,
            value: value as u32,
        });
    }
    let shown = path.display().to_string();
    let mut report = Report::new(&format!("read_rlaif_v ({compression:?})"), seed);
    for (i, mutation) in cases.iter().enumerate() {
        std::fs::write(&path, mutation.apply(&valid)).expect("write");
        report.run(mutation, Some(&shown), || read(&options[i % options.len()]));
    }
    report.finish();
}

#[test]
fn hostile_parquet_uncompressed_is_typed_errors() {
    check_parquet(Compression::UNCOMPRESSED, SEED + 10);
}

#[test]
fn hostile_parquet_snappy_is_typed_errors() {
    check_parquet(Compression::SNAPPY, SEED + 11);
}

#[test]
fn hostile_parquet_zstd_is_typed_errors() {
    check_parquet(
        Compression::ZSTD(ZstdLevel::try_new(3).expect("level")),
        SEED + 12,
    );
}

// ---------------------------------------------------------------------------------------------
// images

/// PNG IHDR edits with a valid CRC: huge, zero and odd dimensions, bad bit depths.
fn png_header_edits(png: &[u8]) -> Vec<Mutation> {
    let mut out = Vec::new();
    let edits: [(&str, usize, &[u8]); 7] = [
        ("huge width", 8, &[0x7f, 0xff, 0xff, 0xff]),
        ("huge height", 12, &[0x7f, 0xff, 0xff, 0xff]),
        ("width 2^31", 8, &[0x80, 0, 0, 0]),
        ("zero width", 8, &[0, 0, 0, 0]),
        ("65535 x height", 8, &[0, 0, 0xff, 0xff]),
        ("bit depth 3", 16, &[3]),
        ("colour type 5", 17, &[5]),
    ];
    for (label, at, value) in edits {
        let mut bytes = png.to_vec();
        // IHDR data starts at 16 (8 signature + 4 length + 4 type); CRC after its 13 bytes.
        bytes[8 + at..8 + at + value.len()].copy_from_slice(value);
        let crc = crc32(&bytes[12..29]);
        bytes[29..33].copy_from_slice(&crc.to_be_bytes());
        out.push(Mutation::Whole {
            label: format!("PNG header (CRC fixed): {label}"),
            bytes,
        });
    }
    out.push(Mutation::SetU32 {
        offset: 33,
        value: 0x7fff_ffff_u32.to_be(),
    });
    out
}

/// JPEG SOF dimension edits (no checksum in JPEG).
fn jpeg_header_edits(jpeg: &[u8]) -> Vec<Mutation> {
    let Some(sof) = jpeg.windows(2).position(|w| w == [0xff, 0xc0]) else {
        return Vec::new();
    };
    // SOF0: marker, length (2), precision (1), height (2), width (2), components (1).
    let edits: [(&str, usize, &[u8]); 5] = [
        ("height 65535", 5, &[0xff, 0xff]),
        ("width 65535", 7, &[0xff, 0xff]),
        ("zero height", 5, &[0, 0]),
        ("zero components", 9, &[0]),
        ("segment length 65535", 2, &[0xff, 0xff]),
    ];
    edits
        .into_iter()
        .map(|(label, at, value)| {
            let mut bytes = jpeg.to_vec();
            bytes[sof + at..sof + at + value.len()].copy_from_slice(value);
            Mutation::Whole {
                label: format!("JPEG header: {label}"),
                bytes,
            }
        })
        .collect()
}

fn check_image(name: &str, seed: u64) {
    let valid = std::fs::read(fixture(name)).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    let shown = path.display().to_string();
    let mut cases = truncations(valid.len(), 40, 60);
    cases.extend(random_set(seed, valid.len(), &[0, 8, 16, 24, 33], 220));
    cases.extend(
        png_header_edits(&valid)
            .into_iter()
            .filter(|_| name.ends_with(".png")),
    );
    cases.extend(jpeg_header_edits(&valid));
    let config = ImageConfig::default().with_size(24, 16);
    let mut report = Report::new(&format!("image decoding ({name})"), seed);
    for mutation in &cases {
        let bytes = mutation.apply(&valid);
        // RLAIF-V's in-memory images: the error names the shard and row.
        let sample = RlaifVSample {
            question: "q".into(),
            chosen: "a".into(),
            origin_dataset: "s".into(),
            image_bytes: bytes.clone(),
            source_file: Arc::from(Path::new("RLAIF-V-Dataset_042.parquet")),
            row_group: 0,
            row: 5,
        };
        report.run(mutation, Some("RLAIF-V-Dataset_042.parquet"), || {
            sample.decode_image()
        });
        // Florence-2's file path, through pre-processing.
        std::fs::write(&path, &bytes).expect("write");
        report.run(mutation, Some(&shown), || {
            let image = load_image(&path)?;
            preprocess_images(&[image], &config)
        });
    }
    report.finish();
}

#[test]
fn hostile_png_is_typed_errors() {
    check_image("image.png", SEED + 20);
}

#[test]
fn hostile_rgba_png_is_typed_errors() {
    check_image("image_rgba.png", SEED + 21);
}

#[test]
fn hostile_jpeg_is_typed_errors() {
    check_image("image.jpg", SEED + 22);
}

#[test]
fn hostile_preprocessor_config_is_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("preprocessor_config.json");
    let shown = path.display().to_string();
    let image = load_image(fixture("image.png")).expect("fixture image");
    let configs = [
        r#"{"size": {"height": 18446744073709551615, "width": 18446744073709551615}}"#,
        r#"{"size": {"height": 4294967296, "width": 4294967296}}"#,
        r#"{"size": {"height": 1000000, "width": 1000000}}"#,
        r#"{"size": {"height": -1, "width": 4}}"#,
        r#"{"size": {"height": 0, "width": 4}}"#,
        r#"{"size": {"shortest_edge": 4}}"#,
        r#"{"size": "768"}"#,
        r#"{"resample": 4294967295}"#,
        r#"{"image_mean": [0.5, 0.5]}"#,
        r#"{"image_std": [1e400, 1, 1]}"#,
        r#"{"rescale_factor": "x"}"#,
        "{",
        "\u{feff}{}",
        "[]",
    ];
    let mut report = Report::new("ImageConfig::from_preprocessor_config", 0);
    for (i, text) in configs.iter().enumerate() {
        std::fs::write(&path, text).expect("write");
        let label = format!("preprocessor config {i}: {text}");
        report.run_labelled(&label, &label, Some(&shown), || {
            ImageConfig::from_preprocessor_config(&path)
                .and_then(|config| preprocess_images(std::slice::from_ref(&image), &config))
        });
    }
    std::fs::write(&path, vec![0xff, 0xfe, 0x00]).expect("write");
    report.run_labelled("not UTF-8", "not UTF-8", Some(&shown), || {
        ImageConfig::from_preprocessor_config(&path)
    });
    report.finish();
}

#[test]
fn hostile_image_shapes_are_typed_errors() {
    let mut report = Report::new("image shapes", 0);
    let huge = [usize::MAX, usize::MAX / 2, 1 << 32, (1 << 62) + 1];
    let mut rng = Rng::new(SEED + 30);
    for _ in 0..40 {
        let (h, w) = (
            *rng.pick(&huge),
            *rng.pick(&[1, 3, usize::MAX / 3, 1 << 31]),
        );
        let label = format!("ImageTransform::apply h={h} w={w}");
        report.run_labelled("huge h, w", &label, None, || {
            ImageTransform::imagenet(8).apply(&[0u8; 48], h, w, None, &mut Vec::new())
        });
        let label = format!("preprocess_rgb8 {w}x{h}");
        report.run_labelled("huge width, height", &label, None, || {
            preprocess_rgb8(&[0u8; 48], w, h, &ImageConfig::default().with_size(4, 4))
        });
        let label = format!("preprocess_rgb8 to {w}x{h}");
        report.run_labelled("huge output size", &label, None, || {
            preprocess_rgb8(&[0u8; 48], 4, 4, &ImageConfig::default().with_size(h, w))
        });
    }
    report.finish();
}

//! Integration tests for `fedvlm::data`: the CIFAR-10 binary reader (on synthetic files in
//! the real format, full size) and the image transform (hand-computed values).

use std::fs;
use std::path::Path;

use burn::backend::Flex;
use fedvlm::data::{
    Augmentation, CIFAR10_CLASSES, CIFAR10_FILE_BYTES, CIFAR10_IMAGE_BYTES, CIFAR10_RECORD_BYTES,
    CIFAR10_RECORDS_PER_FILE, Cifar10, Cifar10Split, DataError, ImageTransform, to_tensor_batch,
    write_cifar_bin,
};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;

mod transform;

// ---------------------------------------------------------------------------------------
// Synthetic CIFAR-10 files
// ---------------------------------------------------------------------------------------

/// Byte `k` of image `r` of file `f` (0..=4 train, 5 test): varies with all three, so a
/// record read from the wrong offset, file or channel does not match.
fn pixel(f: usize, r: usize, k: usize) -> u8 {
    ((f * 37 + r * 101 + k * 7 + (k / 1024) * 50) % 256) as u8
}

/// Label of image `r` of file `f`.
fn label(f: usize, r: usize) -> u8 {
    ((r * 3 + f) % 10) as u8
}

fn image(f: usize, r: usize) -> [u8; CIFAR10_IMAGE_BYTES] {
    std::array::from_fn(|k| pixel(f, r, k))
}

/// The 10,000 records of file `f`.
fn records(f: usize) -> Vec<(u8, [u8; CIFAR10_IMAGE_BYTES])> {
    (0..CIFAR10_RECORDS_PER_FILE)
        .map(|r| (label(f, r), image(f, r)))
        .collect()
}

/// File name of synthetic file `f`.
fn file_name(f: usize) -> &'static str {
    if f < 5 {
        Cifar10::TRAIN_FILES[f]
    } else {
        Cifar10::TEST_FILE
    }
}

/// Writes the six full-size files into `dir`.
fn write_dataset(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    for f in 0..6 {
        write_cifar_bin(&dir.join(file_name(f)), &records(f)).unwrap();
    }
}

fn expect_named(err: &DataError, file: &str) {
    assert!(
        err.to_string().contains(file),
        "error does not name {file}: {err}"
    );
}

#[test]
fn write_cifar_bin_produces_the_documented_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("two.bin");
    let mut img = [0u8; CIFAR10_IMAGE_BYTES];
    img[0] = 11; // R (0, 0)
    img[1024] = 22; // G (0, 0)
    img[2048 + 32 + 1] = 33; // B (1, 1)
    write_cifar_bin(&path, &[(7, img), (2, [255; CIFAR10_IMAGE_BYTES])]).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 2 * 3073);
    assert_eq!(CIFAR10_RECORD_BYTES, 3073);
    assert_eq!(CIFAR10_FILE_BYTES, 30_730_000);
    assert_eq!(bytes[0], 7);
    assert_eq!(bytes[1], 11);
    assert_eq!(bytes[1 + 1024], 22);
    assert_eq!(bytes[1 + 2048 + 33], 33);
    assert_eq!(bytes[3073], 2);
    assert!(bytes[3074..].iter().all(|&b| b == 255));
}

/// The happy path on a full-size synthetic dataset, then the errors that need the other
/// files to be valid (one test, so the 184 MB are written once).
#[test]
fn full_size_dataset_roundtrip_and_late_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar10::DIR_NAME);
    write_dataset(&dir);
    fs::write(
        dir.join(Cifar10::META_FILE),
        "a0\na1\na2\na3\na4\na5\na6\na7\na8\na9\n\n",
    )
    .unwrap();

    // Either the batches folder or its parent.
    let data = Cifar10::load(tmp.path()).unwrap();
    assert_eq!(data.train().len(), 50_000);
    assert_eq!(data.test().len(), 10_000);
    assert_eq!(data.train().images.len(), 50_000 * 3072);
    assert_eq!(data.classes()[0], "a0");
    assert_eq!(data.classes()[9], "a9");

    // Train image f * 10000 + r comes from record r of data_batch_{f + 1}.
    for (f, r) in [(0, 0), (0, 1), (0, 9_999), (2, 4_321), (4, 9_999)] {
        let i = f * 10_000 + r;
        assert_eq!(data.train().labels[i], label(f, r), "label of train {i}");
        assert_eq!(
            data.train().image(i),
            &image(f, r)[..],
            "pixels of train {i}"
        );
    }
    for r in [0, 5_000, 9_999] {
        assert_eq!(data.test().labels[r], label(5, r));
        assert_eq!(data.test().get(r), Some((&image(5, r)[..], label(5, r))));
    }
    // Channel planes: R (0,0) is byte 0, G (0,0) byte 1024, B (31,31) byte 3071.
    let img = data.train().image(1);
    assert_eq!(img[0], pixel(0, 1, 0));
    assert_eq!(img[1024], pixel(0, 1, 1024));
    assert_eq!(img[3071], pixel(0, 1, 3071));
    assert_eq!(data.train().get(50_000), None);
    let labels = data.train().labels_usize();
    assert_eq!(labels.len(), 50_000);
    assert_eq!(labels[12_345], usize::from(label(1, 2_345)));

    let direct = Cifar10::load(&dir).unwrap();
    assert!(direct == data, "loading the batches folder itself differs");

    // The same files in an archive unpack to the same dataset.
    let archive = tmp.path().join("synthetic.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&archive).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(Cifar10::DIR_NAME, &dir).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let other_root = tmp.path().join("other");
    let extracted = Cifar10::extract_archive(&archive, &other_root).unwrap();
    assert_eq!(extracted, other_root.join(Cifar10::DIR_NAME));
    assert!(Cifar10::load(&other_root).unwrap() == data);
    // download() finds the files and does nothing (no network).
    assert_eq!(Cifar10::download(&other_root, false).unwrap(), extracted);
    drop(data);
    drop(direct);

    // Malformed class-name file.
    fs::write(dir.join(Cifar10::META_FILE), "just\nthree\nnames\n").unwrap();
    let err = Cifar10::load(&dir).unwrap_err();
    assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
    expect_named(&err, Cifar10::META_FILE);
    fs::remove_file(dir.join(Cifar10::META_FILE)).unwrap();
    assert_eq!(
        Cifar10::load(&dir).unwrap().classes(),
        CIFAR10_CLASSES.map(String::from)
    );

    // Truncated test batch (one byte short).
    let test_path = dir.join(Cifar10::TEST_FILE);
    let bytes = fs::read(&test_path).unwrap();
    fs::write(&test_path, &bytes[..bytes.len() - 1]).unwrap();
    match Cifar10::load(&dir).unwrap_err() {
        DataError::WrongSize {
            path,
            expected,
            actual,
        } => {
            assert!(path.ends_with(Cifar10::TEST_FILE), "{path}");
            assert_eq!(expected, 30_730_000);
            assert_eq!(actual, 30_729_999);
        }
        other => panic!("expected WrongSize, got {other:?}"),
    }

    // Missing test batch.
    fs::remove_file(&test_path).unwrap();
    match Cifar10::load(&dir).unwrap_err() {
        DataError::MissingFile { path } => assert!(path.ends_with(Cifar10::TEST_FILE)),
        other => panic!("expected MissingFile, got {other:?}"),
    }

    // An archive whose files have the wrong size is refused and nothing is installed.
    let bad_archive = tmp.path().join("bad.tar.gz");
    {
        let gz = flate2::write::GzEncoder::new(
            fs::File::create(&bad_archive).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(Cifar10::DIR_NAME, &dir).unwrap(); // test_batch.bin missing
        tar.into_inner().unwrap().finish().unwrap();
    }
    let bad_root = tmp.path().join("bad");
    let err = Cifar10::extract_archive(&bad_archive, &bad_root).unwrap_err();
    assert!(matches!(err, DataError::MissingFile { .. }), "{err:?}");
    expect_named(&err, Cifar10::TEST_FILE);
    assert!(!bad_root.join(Cifar10::DIR_NAME).exists());
}

#[test]
fn missing_folder_names_the_first_batch_file() {
    let tmp = tempfile::tempdir().unwrap();
    match Cifar10::load(tmp.path()).unwrap_err() {
        DataError::MissingFile { path } => {
            let expected = tmp.path().join(Cifar10::DIR_NAME).join("data_batch_1.bin");
            assert_eq!(path, expected.display().to_string());
        }
        other => panic!("expected MissingFile, got {other:?}"),
    }
}

#[test]
fn truncated_batch_is_a_typed_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar10::DIR_NAME);
    fs::create_dir_all(&dir).unwrap();
    // Valid records, but only 5 of them: 15,365 bytes.
    let few: Vec<_> = records(0).into_iter().take(5).collect();
    write_cifar_bin(&dir.join("data_batch_1.bin"), &few).unwrap();
    let err = Cifar10::load(&dir).unwrap_err();
    match &err {
        DataError::WrongSize {
            path,
            expected,
            actual,
        } => {
            assert!(path.ends_with("data_batch_1.bin"), "{path}");
            assert_eq!(*expected, 30_730_000);
            assert_eq!(*actual, 5 * 3073);
        }
        other => panic!("expected WrongSize, got {other:?}"),
    }
    expect_named(&err, "data_batch_1.bin");
}

#[test]
fn label_ten_is_a_typed_error_with_the_record_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(Cifar10::DIR_NAME);
    fs::create_dir_all(&dir).unwrap();
    let mut recs = records(0);
    recs[1234].0 = 10;
    recs[5000].0 = 200; // a later bad record: the first one is reported
    write_cifar_bin(&dir.join("data_batch_1.bin"), &recs).unwrap();
    let err = Cifar10::load(tmp.path()).unwrap_err();
    match &err {
        DataError::BadLabel {
            path,
            record,
            label,
            max,
        } => {
            assert!(path.ends_with("data_batch_1.bin"), "{path}");
            assert_eq!((*record, *label, *max), (1234, 10, 9));
        }
        other => panic!("expected BadLabel, got {other:?}"),
    }
    expect_named(&err, "data_batch_1.bin");
}

#[test]
fn from_splits_validates_and_subset_selects() {
    let split = Cifar10Split {
        images: (0..3 * 3072).map(|k| (k / 3072) as u8).collect(),
        labels: vec![4, 9, 0],
    };
    let data = Cifar10::from_splits(split.clone(), Cifar10Split::default()).unwrap();
    assert_eq!(data.train().len(), 3);
    assert!(data.test().is_empty());
    assert_eq!(data.classes().len(), 10);
    assert_eq!(data.train().labels_usize(), vec![4, 9, 0]);

    let sub = split.subset(&[2, 0, 2]).unwrap();
    assert_eq!(sub.labels, vec![0, 4, 0]);
    assert!(sub.image(0).iter().all(|&b| b == 2));
    assert!(sub.image(1).iter().all(|&b| b == 0));
    assert!(matches!(
        split.subset(&[3]),
        Err(DataError::IndexOutOfRange { index: 3, len: 3 })
    ));

    let mut bad = split.clone();
    bad.labels[1] = 10;
    assert!(matches!(
        Cifar10::from_splits(bad, Cifar10Split::default()),
        Err(DataError::BadLabel {
            record: 1,
            label: 10,
            ..
        })
    ));
    let mut short = split;
    short.images.pop();
    assert!(matches!(
        Cifar10::from_splits(Cifar10Split::default(), short),
        Err(DataError::WrongSize { .. })
    ));
}

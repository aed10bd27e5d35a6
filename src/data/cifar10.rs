//! CIFAR-10, binary version (Krizhevsky 2009): reader, downloader and a writer for
//! synthetic files in the same format.
//!
//! `cifar-10-batches-bin/` holds `data_batch_1.bin` .. `data_batch_5.bin` (train, 50,000
//! images) and `test_batch.bin` (10,000). Each file is exactly 10,000 records of 3,073 bytes:
//! one label byte (`0..=9`), then the 32x32 image as 1,024 red, 1,024 green and 1,024 blue
//! bytes, each plane row-major. `batches.meta.txt` lists the class names, one a line.
//!
//! Images stay as `u8` in that CHW layout (60,000 x 3,072 bytes = 184 MB in memory); see
//! [`crate::data::ImageTransform`] for the conversion to normalised `f32`.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::DataError;
use super::download::{Checksum, download_file, extract_tar_gz};

/// Image height and width in pixels.
pub const CIFAR10_SIDE: usize = 32;
/// Bytes of one image: 3 channels x 32 x 32.
pub const CIFAR10_IMAGE_BYTES: usize = 3 * CIFAR10_SIDE * CIFAR10_SIDE;
/// Bytes of one record: the label byte then the image.
pub const CIFAR10_RECORD_BYTES: usize = 1 + CIFAR10_IMAGE_BYTES;
/// Records in each batch file.
pub const CIFAR10_RECORDS_PER_FILE: usize = 10_000;
/// Exact size of each batch file: 30,730,000 bytes.
pub const CIFAR10_FILE_BYTES: u64 = (CIFAR10_RECORD_BYTES * CIFAR10_RECORDS_PER_FILE) as u64;
/// The standard class names, in label order (as in `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// One split (train or test): images back to back, each [`CIFAR10_IMAGE_BYTES`] bytes in
/// CHW order (1,024 R, 1,024 G, 1,024 B, row-major), and one label per image.
///
/// The fields are public for cheap construction and hand-off; [`Cifar10Split::validate`]
/// checks that they agree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cifar10Split {
    /// `len() * 3072` bytes: image `i` is `images[i * 3072..(i + 1) * 3072]`.
    pub images: Vec<u8>,
    /// One label in `0..=9` per image.
    pub labels: Vec<u8>,
}

impl Cifar10Split {
    /// An empty split with room for `n` images.
    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Self {
            images: Vec::with_capacity(n * CIFAR10_IMAGE_BYTES),
            labels: Vec::with_capacity(n),
        }
    }

    /// Number of images.
    #[must_use]
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`, 3,072 bytes CHW.
    ///
    /// # Panics
    /// When `i >= self.len()` (or the fields disagree); see [`Cifar10Split::get`].
    #[must_use]
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * CIFAR10_IMAGE_BYTES..(i + 1) * CIFAR10_IMAGE_BYTES]
    }

    /// Image `i` and its label, or `None` when out of range.
    #[must_use]
    pub fn get(&self, i: usize) -> Option<(&[u8], u8)> {
        let label = *self.labels.get(i)?;
        let image = self
            .images
            .get(i * CIFAR10_IMAGE_BYTES..(i + 1) * CIFAR10_IMAGE_BYTES)?;
        Some((image, label))
    }

    /// The labels widened to `usize`, as the partitioners and metrics take them.
    #[must_use]
    pub fn labels_usize(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| usize::from(l)).collect()
    }

    /// The images and labels at `indices`, in that order (repeats allowed).
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DataError> {
        let mut out = Self::with_capacity(indices.len());
        for &i in indices {
            let (image, label) = self.get(i).ok_or(DataError::IndexOutOfRange {
                index: i,
                len: self.len(),
            })?;
            out.images.extend_from_slice(image);
            out.labels.push(label);
        }
        Ok(out)
    }

    /// Checks that `images` holds exactly 3,072 bytes per label and every label is `0..=9`;
    /// `name` is used in the error (in place of a file name).
    pub fn validate(&self, name: &str) -> Result<(), DataError> {
        let expected = self.labels.len() * CIFAR10_IMAGE_BYTES;
        if self.images.len() != expected {
            return Err(DataError::WrongSize {
                path: name.to_string(),
                expected: expected as u64,
                actual: self.images.len() as u64,
            });
        }
        check_labels(&self.labels, name)
    }

    /// Appends every record of one batch file's bytes; `path` is for errors.
    fn push_records(&mut self, bytes: &[u8], path: &Path) -> Result<(), DataError> {
        let first = self.len();
        for record in bytes.chunks_exact(CIFAR10_RECORD_BYTES) {
            self.labels.push(record[0]);
            self.images.extend_from_slice(&record[1..]);
        }
        check_labels(&self.labels[first..], &path.display().to_string())
    }
}

fn check_labels(labels: &[u8], name: &str) -> Result<(), DataError> {
    let max = (CIFAR10_CLASSES.len() - 1) as u8;
    match labels.iter().position(|&l| l > max) {
        Some(record) => Err(DataError::BadLabel {
            path: name.to_string(),
            record,
            label: labels[record],
            max,
        }),
        None => Ok(()),
    }
}

/// CIFAR-10 in memory: the train split (50,000 images when read from disk), the test split
/// (10,000) and the class names.
///
/// Reads the binary version (Krizhevsky 2009): `cifar-10-batches-bin/` holds
/// `data_batch_1.bin` .. `data_batch_5.bin` (train) and `test_batch.bin`, each exactly
/// 10,000 records of 3,073 bytes: one label byte (`0..=9`), then the 32x32 image as 1,024
/// red, 1,024 green and 1,024 blue bytes, each plane row-major. `batches.meta.txt` lists
/// the class names, one a line. Images stay `u8` in that CHW layout (184 MB for all 60,000);
/// [`ImageTransform`](crate::data::ImageTransform) turns them into normalised `f32`.
///
/// ```no_run
/// use fedvlm::data::{Cifar10, cache_dir};
///
/// // Reads (or fetches into) ~/.cache/fedvlm/cifar-10-batches-bin.
/// let cifar = Cifar10::load_or_download(&cache_dir(), true)?;
/// assert_eq!(cifar.train().len(), 50_000);
/// let (image, label) = (cifar.test().image(0), cifar.test().labels[0]);
/// assert_eq!(image.len(), 3 * 32 * 32);
/// println!("{}", cifar.classes()[usize::from(label)]);
/// # Ok::<(), fedvlm::data::DataError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cifar10 {
    train: Cifar10Split,
    test: Cifar10Split,
    classes: Vec<String>,
}

impl Cifar10 {
    /// Where the binary version is published.
    pub const URL: &'static str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
    /// The archive's file name.
    pub const ARCHIVE_NAME: &'static str = "cifar-10-binary.tar.gz";
    /// SHA-256 of the published archive (170,052,171 bytes). The dataset page publishes only
    /// an MD5 (`c32a1d4ab5d03f1284b67883e8d87530`); this SHA-256 is the value several
    /// independent projects pin for the same archive. After extraction the six batch files
    /// are also checked for their exact sizes.
    pub const ARCHIVE_SHA256: &'static str =
        "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd";
    /// The folder the archive unpacks to.
    pub const DIR_NAME: &'static str = "cifar-10-batches-bin";
    /// The training batch files, in reading order.
    pub const TRAIN_FILES: [&'static str; 5] = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ];
    /// The test batch file.
    pub const TEST_FILE: &'static str = "test_batch.bin";
    /// The class-name file (optional when loading).
    pub const META_FILE: &'static str = "batches.meta.txt";

    /// Reads the dataset from `dir`, which is either `cifar-10-batches-bin` itself or the
    /// folder that contains it.
    ///
    /// Every batch file must be exactly [`CIFAR10_FILE_BYTES`] bytes and every label `0..=9`;
    /// errors name the file ([`DataError::MissingFile`], [`DataError::WrongSize`],
    /// [`DataError::BadLabel`] with the record index). Class names come from
    /// `batches.meta.txt` when present (it must then list exactly 10 names), else
    /// [`CIFAR10_CLASSES`].
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = Self::batches_dir(dir.as_ref());
        let mut train = Cifar10Split::with_capacity(5 * CIFAR10_RECORDS_PER_FILE);
        for name in Self::TRAIN_FILES {
            read_batch_file(&dir.join(name), &mut train)?;
        }
        let mut test = Cifar10Split::with_capacity(CIFAR10_RECORDS_PER_FILE);
        read_batch_file(&dir.join(Self::TEST_FILE), &mut test)?;
        let classes = read_class_names(&dir.join(Self::META_FILE))?;
        Ok(Self {
            train,
            test,
            classes,
        })
    }

    /// Builds a dataset from splits made in memory (synthetic data, subsets), with the
    /// standard class names; both splits are [validated](Cifar10Split::validate).
    pub fn from_splits(train: Cifar10Split, test: Cifar10Split) -> Result<Self, DataError> {
        train.validate("train split")?;
        test.validate("test split")?;
        Ok(Self {
            train,
            test,
            classes: CIFAR10_CLASSES.iter().map(|s| (*s).to_string()).collect(),
        })
    }

    /// The training split.
    #[must_use]
    pub fn train(&self) -> &Cifar10Split {
        &self.train
    }

    /// The test split.
    #[must_use]
    pub fn test(&self) -> &Cifar10Split {
        &self.test
    }

    /// The class names, in label order.
    #[must_use]
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The two splits, train first, without copying.
    #[must_use]
    pub fn into_splits(self) -> (Cifar10Split, Cifar10Split) {
        (self.train, self.test)
    }

    /// The folder holding the batch files for a `dir` given as the batches folder itself or
    /// its parent: `dir` when it is named `cifar-10-batches-bin` or already holds
    /// `data_batch_1.bin`, else `dir/cifar-10-batches-bin`.
    #[must_use]
    pub fn batches_dir(dir: &Path) -> PathBuf {
        if dir.file_name().is_some_and(|n| n == Self::DIR_NAME)
            || dir.join(Self::TRAIN_FILES[0]).is_file()
        {
            dir.to_path_buf()
        } else {
            dir.join(Self::DIR_NAME)
        }
    }

    /// Makes sure `root/cifar-10-batches-bin` holds the six batch files and returns that
    /// folder.
    ///
    /// When any is missing, fetches [`Cifar10::URL`] to `root/cifar-10-binary.tar.gz`
    /// (reused if it is already there and verifies; SHA-256 [`Cifar10::ARCHIVE_SHA256`]) and
    /// unpacks it with [`Cifar10::extract_archive`] (which checks the six files' sizes). The
    /// archive is kept. Honours the offline switch ([`DataError::Offline`]). Files already
    /// present are not re-checked here; [`Cifar10::load`] checks their sizes.
    pub fn download(root: &Path, progress: bool) -> Result<PathBuf, DataError> {
        let dir = root.join(Self::DIR_NAME);
        if Self::all_files()
            .iter()
            .all(|name| dir.join(name).is_file())
        {
            return Ok(dir);
        }
        let archive = root.join(Self::ARCHIVE_NAME);
        let checksum = Checksum::Sha256(Self::ARCHIVE_SHA256.to_string());
        download_file(Self::URL, &archive, Some(&checksum), progress)?;

        Self::extract_archive(&archive, root)
    }

    /// Unpacks a CIFAR-10 binary archive that is already on disk (fetched by other means)
    /// into `root/cifar-10-batches-bin` and returns that folder. No checksum is checked here
    /// (see [`Cifar10::download`] for that); the archive must hold the folder with the six
    /// batch files of the exact size, else nothing is moved into place.
    ///
    /// The archive is unpacked into a temporary folder under `root` and the files are then
    /// moved (renamed) into the batches folder, replacing files of the same names, so an
    /// interrupted run leaves no half-written batch behind.
    pub fn extract_archive(archive: &Path, root: &Path) -> Result<PathBuf, DataError> {
        let dir = root.join(Self::DIR_NAME);
        let tmp = root.join(format!(
            ".{}.extract-{}",
            Self::DIR_NAME,
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        }
        let result = Self::install_from_archive(archive, &tmp, &dir);
        // Best effort: leftovers of a failed extraction are harmless.
        let _ = fs::remove_dir_all(&tmp);
        result.map(|()| dir)
    }

    /// Extracts `archive` into `tmp`, checks the batch files and moves them into `dir`.
    fn install_from_archive(archive: &Path, tmp: &Path, dir: &Path) -> Result<(), DataError> {
        extract_tar_gz(archive, tmp)?;
        let extracted = tmp.join(Self::DIR_NAME);
        if !extracted.is_dir() {
            return Err(DataError::malformed(
                archive,
                format!("no `{}` folder inside", Self::DIR_NAME),
            ));
        }
        for name in Self::all_files() {
            let path = extracted.join(name);
            let size = file_size(&path)?;
            if size != CIFAR10_FILE_BYTES {
                return Err(DataError::WrongSize {
                    path: path.display().to_string(),
                    expected: CIFAR10_FILE_BYTES,
                    actual: size,
                });
            }
        }
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let entries = fs::read_dir(&extracted).map_err(|e| DataError::io(&extracted, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| DataError::io(&extracted, e))?;
            let to = dir.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| DataError::io(&to, e))?;
        }
        Ok(())
    }

    /// [`Cifar10::download`] (a no-op when the files are there) then [`Cifar10::load`].
    pub fn load_or_download(root: &Path, progress: bool) -> Result<Self, DataError> {
        let dir = Self::download(root, progress)?;
        Self::load(dir)
    }

    fn all_files() -> [&'static str; 6] {
        let [a, b, c, d, e] = Self::TRAIN_FILES;
        [a, b, c, d, e, Self::TEST_FILE]
    }
}

fn file_size(path: &Path) -> Result<u64, DataError> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DataError::MissingFile {
            path: path.display().to_string(),
        }),
        Err(e) => Err(DataError::io(path, e)),
    }
}

/// Reads one batch file (which must be exactly [`CIFAR10_FILE_BYTES`] bytes) into `split`.
fn read_batch_file(path: &Path, split: &mut Cifar10Split) -> Result<(), DataError> {
    let wrong_size = |actual: u64| DataError::WrongSize {
        path: path.display().to_string(),
        expected: CIFAR10_FILE_BYTES,
        actual,
    };
    let size = file_size(path)?;
    if size != CIFAR10_FILE_BYTES {
        return Err(wrong_size(size));
    }
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut bytes = Vec::with_capacity(CIFAR10_FILE_BYTES as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| DataError::io(path, e))?;
    // The file may have changed between the size check and the read.
    if bytes.len() as u64 != CIFAR10_FILE_BYTES {
        return Err(wrong_size(bytes.len() as u64));
    }
    split.push_records(&bytes, path)
}

/// Class names from `batches.meta.txt` (non-empty lines, trimmed), or the standard ones
/// when the file is absent.
fn read_class_names(path: &Path) -> Result<Vec<String>, DataError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(CIFAR10_CLASSES.iter().map(|s| (*s).to_string()).collect());
        }
        Err(e) => return Err(DataError::io(path, e)),
    };
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != CIFAR10_CLASSES.len() {
        return Err(DataError::malformed(
            path,
            format!(
                "expected {} class names, found {}",
                CIFAR10_CLASSES.len(),
                names.len()
            ),
        ));
    }
    Ok(names)
}

/// Writes `records` (label, CHW image) in the CIFAR-10 binary format: for tests and tools
/// that need files in the real layout (synthetic fixtures, subsets). A file
/// [`Cifar10::load`] accepts must hold exactly [`CIFAR10_RECORDS_PER_FILE`] records; labels
/// are written as given (no check), so invalid files can be made on purpose.
pub fn write_cifar_bin(
    path: &Path,
    records: &[(u8, [u8; CIFAR10_IMAGE_BYTES])],
) -> Result<(), DataError> {
    let file = File::create(path).map_err(|e| DataError::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    for (label, image) in records {
        w.write_all(&[*label]).map_err(|e| DataError::io(path, e))?;
        w.write_all(image).map_err(|e| DataError::io(path, e))?;
    }
    w.flush().map_err(|e| DataError::io(path, e))
}

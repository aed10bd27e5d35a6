//! Where a sample's image lives until a batch needs its pixels.
//!
//! A preprocessed 768x768 image takes 7 MB; its JPEG often 100 kB. Samples therefore keep the
//! encoded image (in memory, or in an [`ImageStore`] file on disk, a few bytes a sample in
//! memory) and a batch decodes and preprocesses its own images when it is built
//! ([`SampleImage::pixels`]): memory grows with the batch, not with the dataset.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{FedError, Result};
use crate::models::florence2::processor::Florence2Processor;

/// Turns an encoded image into the model's normalised pixels.
pub trait ImagePreprocessor: Send + Sync + fmt::Debug {
    /// Decodes and preprocesses one encoded image into `[3, size, size]` row-major values.
    ///
    /// # Errors
    /// [`FedError::Data`]-like errors for bytes that do not decode.
    fn pixels(&self, encoded: &[u8]) -> Result<Vec<f32>>;

    /// Side of the (square) preprocessed image.
    fn image_size(&self) -> usize;

    /// Everything that determines the pixels of a given image (for the frozen-prefix cache's
    /// key).
    fn fingerprint(&self) -> String;
}

impl ImagePreprocessor for Florence2Processor {
    fn pixels(&self, encoded: &[u8]) -> Result<Vec<f32>> {
        let image = ::image::load_from_memory(encoded)
            .map_err(|reason| FedError::Task(format!("undecodable image: {reason}")))?;
        let pixels = self
            .preprocess(std::slice::from_ref(&image))
            .map_err(|e| FedError::Task(format!("preprocessing an image: {e}")))?;
        Ok(pixels.data)
    }

    fn image_size(&self) -> usize {
        self.image_config().height
    }

    fn fingerprint(&self) -> String {
        format!("{:?}", self.image_config())
    }
}

/// An append-only file of encoded images: what a sample keeps is its offset and length.
///
/// [`ImageStore::temporary`] removes its file when the store is dropped.
#[derive(Debug)]
pub struct ImageStore {
    file: Mutex<(File, u64)>,
    path: PathBuf,
    remove_on_drop: bool,
}

static STORES: AtomicUsize = AtomicUsize::new(0);

impl ImageStore {
    /// A new store file in `dir` (created if needed), named after the process, removed when
    /// the store is dropped.
    ///
    /// # Errors
    /// [`FedError::Io`] when the folder or the file cannot be created.
    pub fn temporary(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| FedError::io(dir, e))?;
        let n = STORES.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("images-{}-{n}.bin", std::process::id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| FedError::io(&path, e))?;
        Ok(Self {
            file: Mutex::new((file, 0)),
            path,
            remove_on_drop: true,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one encoded image; returns where it is.
    ///
    /// # Errors
    /// [`FedError::Io`] when the file cannot be written.
    pub fn append(self: &Arc<Self>, bytes: &[u8]) -> Result<EncodedBytes> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, end) = &mut *guard;
        let offset = *end;
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.write_all(bytes))
            .map_err(|e| FedError::io(&self.path, e))?;
        *end += bytes.len() as u64;
        Ok(EncodedBytes::Stored {
            store: Arc::clone(self),
            offset,
            len: bytes.len(),
        })
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, _) = &mut *guard;
        let mut out = vec![0u8; len];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut out))
            .map_err(|e| FedError::io(&self.path, e))?;
        Ok(out)
    }
}

impl Drop for ImageStore {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// An encoded image (JPEG or PNG bytes), in memory or in an [`ImageStore`].
#[derive(Debug, Clone)]
pub enum EncodedBytes {
    /// The bytes themselves.
    Memory(Arc<[u8]>),
    /// `len` bytes at `offset` of a store's file.
    Stored {
        /// The store.
        store: Arc<ImageStore>,
        /// Where the image starts.
        offset: u64,
        /// Its length in bytes.
        len: usize,
    },
}

impl EncodedBytes {
    /// The bytes (read from the store's file when stored).
    ///
    /// # Errors
    /// [`FedError::Io`] when the store cannot be read.
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match self {
            Self::Memory(bytes) => Ok(Cow::Borrowed(bytes)),
            Self::Stored { store, offset, len } => Ok(Cow::Owned(store.read(*offset, *len)?)),
        }
    }
}

/// A sample's image: preprocessed pixels, an encoded image preprocessed when used, or
/// nothing (dropped once a cache holds the sample's frozen prefix).
#[derive(Debug, Clone)]
pub enum SampleImage {
    /// `[3, size, size]` row-major, normalised as the processor does.
    Pixels(Arc<[f32]>),
    /// An encoded image and what turns it into pixels.
    Encoded {
        /// The image.
        bytes: EncodedBytes,
        /// Its decoder and preprocessor.
        preprocessor: Arc<dyn ImagePreprocessor>,
    },
    /// No image (see [`crate::experiments::rlaif::RlaifData::drop_cached_pixels`]).
    Dropped,
}

impl SampleImage {
    /// The pixels `[3, size, size]`: borrowed when preprocessed, decoded and preprocessed
    /// otherwise.
    ///
    /// # Errors
    /// [`FedError::Task`] for an image that does not decode or was dropped, and the store's
    /// I/O errors.
    pub fn pixels(&self) -> Result<Cow<'_, [f32]>> {
        match self {
            Self::Pixels(values) => Ok(Cow::Borrowed(values)),
            Self::Encoded {
                bytes,
                preprocessor,
            } => Ok(Cow::Owned(preprocessor.pixels(&bytes.bytes()?)?)),
            Self::Dropped => Err(FedError::Task(
                "the sample's image was dropped (its frozen prefix is cached)".into(),
            )),
        }
    }

    /// Whether the image is still there.
    pub fn is_present(&self) -> bool {
        !matches!(self, Self::Dropped)
    }
}

/// The first 16 bytes of the sha256 of `parts`, concatenated.
pub fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let full = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

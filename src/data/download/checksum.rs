//! Checksums of downloaded files: [`Checksum`] and [`sha256_file`].

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::data::DataError;

/// How a downloaded (or cached) file is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checksum {
    /// The full SHA-256 digest, hex (either case).
    Sha256(String),
    /// The first hex digits of the SHA-256 digest, as in torchvision/torch-hub file names
    /// (`mobilenet_v3_small-047dcff4.pth` carries `047dcff4`). See
    /// [`Checksum::from_torch_hub_filename`].
    Sha256Prefix(String),
}

impl Checksum {
    /// The checksum a torch-hub style file name carries: the hex digits between the first
    /// `-` followed by hex digits and the next `.`, as torch.hub's
    /// `HASH_REGEX = r"-([a-f0-9]*)\."` reads them (`resnet18-f37072fd.pth` -> `f37072fd`).
    /// `None` when the name carries no such part.
    ///
    /// ```
    /// use fedvlm::data::Checksum;
    /// assert_eq!(
    ///     Checksum::from_torch_hub_filename("mobilenet_v3_small-047dcff4.pth"),
    ///     Some(Checksum::Sha256Prefix("047dcff4".into()))
    /// );
    /// assert_eq!(Checksum::from_torch_hub_filename("model.safetensors"), None);
    /// ```
    #[must_use]
    pub fn from_torch_hub_filename(name: &str) -> Option<Self> {
        // regex search semantics: the first '-' whose following run of [a-f0-9] is
        // immediately followed by '.'.
        let bytes = name.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b != b'-' {
                continue;
            }
            let run = bytes[i + 1..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
                .count();
            if run > 0 && bytes.get(i + 1 + run) == Some(&b'.') {
                return Some(Self::Sha256Prefix(name[i + 1..i + 1 + run].to_string()));
            }
        }
        None
    }

    /// The expected hex (lower case), as given.
    #[must_use]
    pub fn expected(&self) -> String {
        match self {
            Self::Sha256(h) | Self::Sha256Prefix(h) => h.to_ascii_lowercase(),
        }
    }

    /// Whether a full SHA-256 digest (lower-case hex) satisfies this checksum.
    #[must_use]
    pub fn matches_sha256(&self, digest_hex: &str) -> bool {
        let expected = self.expected();
        match self {
            Self::Sha256(_) => digest_hex.eq_ignore_ascii_case(&expected),
            Self::Sha256Prefix(_) => {
                !expected.is_empty()
                    && digest_hex.len() >= expected.len()
                    && digest_hex[..expected.len()].eq_ignore_ascii_case(&expected)
            }
        }
    }

    /// Checks a file on disk; [`DataError::ChecksumMismatch`] names it when it differs.
    pub fn verify_file(&self, path: &Path) -> Result<(), DataError> {
        let actual = sha256_file(path)?;
        if self.matches_sha256(&actual) {
            Ok(())
        } else {
            Err(DataError::ChecksumMismatch {
                path: path.display().to_string(),
                expected: self.expected(),
                actual,
            })
        }
    }
}

/// The SHA-256 digest of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

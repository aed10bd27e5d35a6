//! The node's identity: an ECDSA P-384 key, and the three headers that sign every request
//! (`flwr-public-key`, `flwr-timestamp`, `flwr-signature`).
//!
//! Without node authentication a node uses a fresh key per process. With it, the key is the
//! OpenSSH private key whose public half an operator registered with `flwr supernode register`
//! (`ssh-keygen -t ecdsa -b 384 -N ""`); PKCS#8 and SEC1 PEM keys are read too.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{Signature, SigningKey};
use p384::elliptic_curve::sec1::ToEncodedPoint;
use p384::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

use super::error::FlowerError;

/// An EC P-384 key pair that signs requests.
#[derive(Clone)]
pub struct NodeKey {
    signing: SigningKey,
    public_pem: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

fn key_err(detail: impl Into<String>) -> FlowerError {
    FlowerError::Key(detail.into())
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, FlowerError> {
        use rand::Rng as _;
        let mut rng = rand::rng();
        // A random 48-byte string is a valid scalar with overwhelming probability.
        for _ in 0..16 {
            let mut bytes = [0u8; 48];
            rng.fill_bytes(&mut bytes);
            if let Ok(secret) = p384::SecretKey::from_slice(&bytes) {
                return Self::from_secret(&secret);
            }
        }
        Err(key_err("could not draw a valid P-384 scalar"))
    }

    fn from_secret(secret: &p384::SecretKey) -> Result<Self, FlowerError> {
        let public_pem = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| key_err(format!("encoding the public key: {e}")))?;
        Ok(Self {
            signing: SigningKey::from(secret),
            public_pem,
        })
    }

    /// Reads a private key file: OpenSSH (`ssh-keygen -t ecdsa -b 384`, unencrypted), PKCS#8 or
    /// SEC1 PEM.
    pub fn from_file(path: &Path) -> Result<Self, FlowerError> {
        let text = std::fs::read_to_string(path).map_err(|source| FlowerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_pem(&text).map_err(|e| key_err(format!("{}: {e}", path.display())))
    }

    /// Reads a private key from its text (see [`NodeKey::from_file`]).
    pub fn from_pem(text: &str) -> Result<Self, FlowerError> {
        let secret = if text.contains("BEGIN OPENSSH PRIVATE KEY") {
            openssh_secret(text)?
        } else if text.contains("BEGIN EC PRIVATE KEY") {
            p384::SecretKey::from_sec1_pem(text).map_err(|e| key_err(format!("SEC1: {e}")))?
        } else if text.contains("BEGIN PRIVATE KEY") {
            p384::SecretKey::from_pkcs8_pem(text).map_err(|e| key_err(format!("PKCS#8: {e}")))?
        } else {
            return Err(key_err("not an OpenSSH, SEC1 or PKCS#8 private key"));
        };
        Self::from_secret(&secret)
    }

    /// The PEM SubjectPublicKeyInfo of the public key (what register-node sends).
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The DER ECDSA signature over SHA-256 of `message` (what flwr's `ec.ECDSA(SHA256)` makes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, FlowerError> {
        let digest = Sha256::digest(message);
        let signature: Signature = self
            .signing
            .sign_prehash(&digest)
            .map_err(|e| key_err(format!("signing: {e}")))?;
        Ok(signature.to_der().as_bytes().to_vec())
    }

    /// The three authentication headers for a request made now.
    pub fn auth_headers(&self) -> Result<[(&'static str, String); 3], FlowerError> {
        let timestamp = iso8601_utc(SystemTime::now());
        let signature = self.sign(timestamp.as_bytes())?;
        Ok([
            ("flwr-public-key", B64.encode(self.public_pem.as_bytes())),
            ("flwr-timestamp", timestamp),
            ("flwr-signature", B64.encode(signature)),
        ])
    }
}

/// `time` as UTC ISO-8601 with microseconds and offset, like Python's
/// `datetime.now(timezone.utc).isoformat()`: `2026-12-04T14:35:55.425454+00:00`.
pub fn iso8601_utc(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A cursor over the binary form of an OpenSSH private key.
struct SshReader<'a>(&'a [u8]);

impl<'a> SshReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FlowerError> {
        if n > self.0.len() {
            return Err(key_err("OpenSSH key is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, FlowerError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<&'a [u8], FlowerError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// The secret scalar of an unencrypted OpenSSH `ecdsa-sha2-nistp384` private key.
fn openssh_secret(text: &str) -> Result<p384::SecretKey, FlowerError> {
    let b64: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    let raw = B64
        .decode(b64.as_bytes())
        .map_err(|e| key_err(format!("OpenSSH key is not base64: {e}")))?;
    let mut r = SshReader(&raw);
    if r.take(15)? != b"openssh-key-v1\0" {
        return Err(key_err("not an openssh-key-v1 key"));
    }
    let (cipher, kdf) = (r.string()?, r.string()?);
    r.string()?; // kdf options
    if cipher != b"none" || kdf != b"none" {
        return Err(key_err(
            "the OpenSSH key is passphrase-protected (make it with -N \"\")",
        ));
    }
    if r.u32()? != 1 {
        return Err(key_err("the OpenSSH file must hold exactly one key"));
    }
    r.string()?; // public key blob
    let mut p = SshReader(r.string()?);
    if p.u32()? != p.u32()? {
        return Err(key_err("OpenSSH key check bytes differ (corrupt key)"));
    }
    let key_type = p.string()?;
    if key_type != b"ecdsa-sha2-nistp384" {
        return Err(key_err(format!(
            "key type `{}` is not ecdsa-sha2-nistp384 (use ssh-keygen -t ecdsa -b 384)",
            String::from_utf8_lossy(key_type)
        )));
    }
    if p.string()? != b"nistp384" {
        return Err(key_err("curve is not nistp384"));
    }
    let q = p.string()?;
    let d = p.string()?;
    let d: Vec<u8> = d.iter().copied().skip_while(|b| *b == 0).collect();
    if d.len() > 48 {
        return Err(key_err("private scalar is too long"));
    }
    let mut scalar = [0u8; 48];
    scalar[48 - d.len()..].copy_from_slice(&d);
    let secret = p384::SecretKey::from_slice(&scalar)
        .map_err(|_| key_err("private scalar is not valid for P-384"))?;
    if secret.public_key().to_encoded_point(false).as_bytes() != q {
        return Err(key_err("public and private halves of the OpenSSH key disagree"));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_python() {
        // datetime.fromtimestamp(1796395955.425454, timezone.utc).isoformat()
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_395_955_425_454);
        assert_eq!(iso8601_utc(t), "2026-12-04T14:52:35.425454+00:00");
        assert_eq!(iso8601_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000000+00:00");
    }

    #[test]
    fn generated_keys_sign() {
        let key = NodeKey::generate().unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let headers = key.auth_headers().unwrap();
        assert_eq!(headers[0].0, "flwr-public-key");
        assert!(!key.sign(b"x").unwrap().is_empty());
    }
}

//! Node keys: OpenSSH (ssh-keygen), PKCS#8 and SEC1 files of one P-384 key; refused keys;
//! signatures that verify as ECDSA-SHA256.

use fedvlm::flower::FlowerError;
use fedvlm::flower::auth::NodeKey;
use p384::ecdsa::signature::hazmat::PrehashVerifier;
use p384::ecdsa::{DerSignature, VerifyingKey};
use p384::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use super::fixture_dir;

fn key_file(name: &str) -> std::path::PathBuf {
    fixture_dir().join("keys").join(name)
}

#[test]
fn one_key_in_three_formats_gives_flwr_public_key() {
    let expected = std::fs::read_to_string(key_file("node_p384.spki.pem")).unwrap();
    for name in ["node_p384", "node_p384.pkcs8.pem", "node_p384.sec1.pem"] {
        let key = NodeKey::from_file(&key_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.public_key_pem(), expected, "{name}");
    }
}

#[test]
fn signatures_verify_as_ecdsa_sha256_over_the_timestamp() {
    let key = NodeKey::from_file(&key_file("node_p384")).unwrap();
    let verifying = VerifyingKey::from_public_key_pem(key.public_key_pem()).unwrap();
    let headers = key.auth_headers().unwrap();
    let names: Vec<&str> = headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["flwr-public-key", "flwr-timestamp", "flwr-signature"]
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        b64.decode(&headers[0].1).unwrap(),
        key.public_key_pem().as_bytes()
    );
    let timestamp = &headers[1].1;
    assert!(
        timestamp.ends_with("+00:00") && timestamp.len() == 32,
        "{timestamp}"
    );
    let der = b64.decode(&headers[2].1).unwrap();
    let signature = DerSignature::try_from(der.as_slice()).unwrap();
    let digest = Sha256::digest(timestamp.as_bytes());
    verifying
        .verify_prehash(&digest, &signature)
        .expect("a valid signature");
    let other = Sha256::digest(b"2026-12-04T14:35:55.425454+00:00");
    assert!(verifying.verify_prehash(&other, &signature).is_err());
}

#[test]
fn wrong_curve_encrypted_and_garbage_keys_are_refused() {
    for name in ["node_p256", "node_p384_encrypted", "node_p384.pub"] {
        let result = NodeKey::from_file(&key_file(name));
        assert!(
            matches!(result, Err(FlowerError::Key(_))),
            "{name}: {result:?}"
        );
    }
    let missing = NodeKey::from_file(&key_file("no_such_key"));
    assert!(matches!(missing, Err(FlowerError::Io { .. })));
    let text = std::fs::read_to_string(key_file("node_p384")).unwrap();
    // Truncated or corrupted OpenSSH bodies: typed errors, no panic.
    for cut in (40..text.len()).step_by(17) {
        let mut broken = text[..cut].to_string();
        broken.push_str("\n-----END OPENSSH PRIVATE KEY-----\n");
        let _ = NodeKey::from_pem(&broken);
    }
    assert!(NodeKey::from_pem("hello").is_err());
}

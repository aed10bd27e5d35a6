//! The Flower protocol layer without a network: real request/response bodies of a stock flwr
//! 1.42 run (`tests/fixtures/flower/run/`, recorded with `scripts/flower_proxy.py`), objects made
//! by flwr's own classes (`tests/fixtures/flower/reference_objects.json`, from
//! `scripts/flower_reference_objects.py`), `.npy` files from numpy, and malformed input.
#![cfg(feature = "flower")]

#[path = "flower_protocol/fixtures.rs"]
mod fixtures;
#[path = "flower_protocol/keys.rs"]
mod keys;
#[path = "flower_protocol/mutations.rs"]
mod mutations;
#[path = "flower_protocol/npy.rs"]
mod npy;
#[path = "flower_protocol/reference.rs"]
mod reference;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value as Json;

/// `tests/fixtures/flower/`.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flower")
}

/// `reference_objects.json`.
pub fn reference() -> Json {
    let path = fixture_dir().join("reference_objects.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).expect("reference_objects.json is JSON")
}

/// Base64 to bytes.
pub fn b64(v: &Json) -> Vec<u8> {
    B64.decode(v.as_str().expect("a base64 string"))
        .expect("valid base64")
}

/// The reference message's objects: (id, bytes) in flwr's post-order.
pub fn reference_objects(message: &Json) -> Vec<(String, Vec<u8>)> {
    message["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|pair| (pair[0].as_str().expect("id").to_string(), b64(&pair[1])))
        .collect()
}

/// Objects as the map `decode_message_content` takes.
pub fn object_map(objects: &[(String, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    objects.iter().cloned().collect()
}

//! The JSON bodies of `RecordDict`, `ArrayRecord` and `Array` objects: written like Python's
//! `json.dumps` (separators `", "` and `": "`, ASCII only), read in key order.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};

use crate::flower::error::FlowerError;

/// A JSON string as Python's `json.dumps` writes it (`ensure_ascii=True`).
fn py_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `{"k": "v", ...}` in the given order.
pub(crate) fn str_map(entries: &[(String, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        py_string(k, &mut out);
        out.push_str(": ");
        py_string(v, &mut out);
    }
    out.push('}');
    out
}

fn int_list(values: impl Iterator<Item = usize>) -> String {
    let items: Vec<String> = values.map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The body of an `Array` object.
pub(crate) fn array_meta(dtype: &str, shape: &[usize], chunk_indices: &[usize]) -> String {
    let mut out = String::from("{\"dtype\": ");
    py_string(dtype, &mut out);
    out.push_str(", \"shape\": ");
    out.push_str(&int_list(shape.iter().copied()));
    out.push_str(", \"stype\": \"numpy.ndarray\", \"arraychunk_ids\": ");
    out.push_str(&int_list(chunk_indices.iter().copied()));
    out.push('}');
    out
}

/// A JSON object of strings, keys in document order, duplicates rejected.
struct OrderedStrMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedStrMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedStrMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(OrderedStrMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads `{"name": "<object id>", ...}` in key order.
pub(crate) fn parse_str_map(body: &[u8], what: &str) -> Result<Vec<(String, String)>, FlowerError> {
    serde_json::from_slice::<OrderedStrMap>(body)
        .map(|m| m.0)
        .map_err(|e| FlowerError::decode(what, e))
}

/// The body of an `Array` object.
#[derive(Debug, Deserialize)]
pub(crate) struct ArrayMeta {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub stype: String,
    pub arraychunk_ids: Vec<usize>,
}

/// Reads an `Array` body.
pub(crate) fn parse_array_meta(body: &[u8]) -> Result<ArrayMeta, FlowerError> {
    serde_json::from_slice(body).map_err(|e| FlowerError::decode("Array body", e))
}

//! Structured edits of safetensors files (payloads, weights, PEFT adapters).

use serde_json::{Map, Value};

use super::{HUGE, Mutation};

/// A safetensors file taken apart: its header JSON and its data bytes.
pub struct SafetensorsParts {
    /// The header, `{name: {dtype, shape, data_offsets}, "__metadata__": {...}}`.
    pub header: Map<String, Value>,
    /// The bytes after the header.
    pub data: Vec<u8>,
}

impl SafetensorsParts {
    /// Splits valid safetensors bytes.
    pub fn parse(bytes: &[u8]) -> Self {
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("header JSON");
        Self {
            header: header.as_object().expect("header object").clone(),
            data: bytes[8 + n..].to_vec(),
        }
    }

    /// Joins a header text (padded with spaces to 8 bytes) and data into a file.
    pub fn join(header: &str, data: &[u8]) -> Vec<u8> {
        let mut header = header.as_bytes().to_vec();
        while !header.len().is_multiple_of(8) {
            header.push(b' ');
        }
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out
    }

    /// The tensor names, sorted (`__metadata__` left out).
    pub fn names(&self) -> Vec<String> {
        self.header
            .keys()
            .filter(|k| *k != "__metadata__")
            .cloned()
            .collect()
    }

    /// The file with `edit` applied to a copy of the header.
    pub fn with(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut header = self.header.clone();
        edit(&mut header);
        Self::join(&Value::Object(header).to_string(), &self.data)
    }

    /// A tensor's data range.
    pub fn range(&self, name: &str) -> (usize, usize) {
        let offsets = &self.header[name]["data_offsets"];
        let at = |i: usize| offsets[i].as_u64().expect("offset") as usize;
        (at(0), at(1))
    }

    /// A tensor's dtype.
    pub fn dtype(&self, name: &str) -> String {
        self.header[name]["dtype"]
            .as_str()
            .expect("dtype")
            .to_string()
    }
}

/// Structured edits of a valid safetensors file: wrong dtypes, shapes that disagree with the
/// data or overflow, offsets out of range or reversed, duplicated names, broken metadata,
/// header length fields set to huge values, header text that is not JSON, NaN and infinity in
/// the data. Each edit is applied to `targets` tensors (at most), the first ones by name.
pub fn safetensors_edits(bytes: &[u8], targets: usize) -> Vec<Mutation> {
    let parts = SafetensorsParts::parse(bytes);
    let mut out = Vec::new();
    let mut push = |label: String, bytes: Vec<u8>| out.push(Mutation::Whole { label, bytes });
    let data_len = parts.data.len() as u64;
    let header_len = bytes.len() - parts.data.len() - 8;
    for name in parts.names().into_iter().take(targets) {
        let tensor = |h: &mut Map<String, Value>| h[&name].as_object_mut().cloned();
        let set = |field: &'static str, value: Value| {
            let name = name.clone();
            move |h: &mut Map<String, Value>| {
                if let Some(t) = h.get_mut(&name).and_then(Value::as_object_mut) {
                    t.insert(field.into(), value);
                }
            }
        };
        for dtype in ["I64", "BOOL", "F64", "U8", "F8_E4M3", "XYZ", "f32"] {
            push(
                format!("wrong dtype: `{name}` as {dtype}"),
                parts.with(set("dtype", dtype.into())),
            );
        }
        let swapped = if parts.dtype(&name) == "F32" {
            "F16"
        } else {
            "F32"
        };
        push(
            format!("wrong dtype: `{name}` as {swapped}, same bytes"),
            parts.with(set("dtype", swapped.into())),
        );
        push(
            format!("wrong dtype: `{name}` dtype is a number"),
            parts.with(set("dtype", 7.into())),
        );
        let shapes: [(&str, Value); 8] = [
            ("one more dim", serde_json::json!([2, 3, 5])),
            ("one value", serde_json::json!([1])),
            ("zero-sized", serde_json::json!([0])),
            ("huge dim", serde_json::json!([u64::MAX])),
            (
                "overflowing product",
                serde_json::json!([1u64 << 32, 1u64 << 32, 16]),
            ),
            ("negative dim", serde_json::json!([-1, 4])),
            ("not a list", serde_json::json!("3x4")),
            ("float dim", serde_json::json!([1.5])),
        ];
        for (what, shape) in shapes {
            push(
                format!("shape/data mismatch: `{name}` shape {what}"),
                parts.with(set("shape", shape)),
            );
        }
        let (begin, end) = parts.range(&name);
        let offsets: [(&str, Value); 7] = [
            ("past the end", serde_json::json!([begin, data_len + 1])),
            ("far past the end", serde_json::json!([begin, u64::MAX])),
            ("reversed", serde_json::json!([end, begin])),
            ("both huge", serde_json::json!([u64::MAX - 1, u64::MAX])),
            ("one number", serde_json::json!([begin])),
            ("three numbers", serde_json::json!([begin, end, end])),
            ("negative", serde_json::json!([-8, end])),
        ];
        for (what, value) in offsets {
            push(
                format!("offsets out of range: `{name}` {what}"),
                parts.with(set("data_offsets", value)),
            );
        }
        for field in ["dtype", "shape", "data_offsets"] {
            let name = name.clone();
            push(
                format!("missing field: `{name}` without {field}"),
                parts.with(move |h| {
                    if let Some(t) = h.get_mut(&name).and_then(Value::as_object_mut) {
                        t.remove(field);
                    }
                }),
            );
        }
        {
            let name = name.clone();
            push(
                format!("tensor entry not an object: `{name}`"),
                parts.with(move |h| {
                    h.insert(name, Value::String("x".into()));
                }),
            );
        }
        // Duplicated names: JSON objects cannot say it, so the header text is built by hand.
        let mut header = parts.header.clone();
        if let Some(entry) = tensor(&mut header) {
            let entry = Value::Object(entry).to_string();
            let text = Value::Object(header).to_string();
            let dup = format!("{{{}:{entry},{}", Value::String(name.clone()), &text[1..]);
            push(
                format!("duplicated name: `{name}` twice"),
                SafetensorsParts::join(&dup, &parts.data),
            );
        }
        // Another tensor overlapping this one's bytes.
        {
            let (name, alias) = (name.clone(), format!("{name}.alias"));
            push(
                format!("overlapping tensors: `{alias}` over `{name}`"),
                parts.with(move |h| {
                    let entry = h[&name].clone();
                    h.insert(alias, entry);
                }),
            );
        }
        // Non-finite values in the data.
        let dtype = parts.dtype(&name);
        let specials: &[(&str, &[u8])] = match dtype.as_str() {
            "F32" => &[
                ("NaN", &[0x00, 0x00, 0xc0, 0x7f]),
                ("+inf", &[0x00, 0x00, 0x80, 0x7f]),
                ("-inf", &[0x00, 0x00, 0x80, 0xff]),
            ],
            "F16" => &[("NaN", &[0x00, 0x7e]), ("+inf", &[0x00, 0x7c])],
            "BF16" => &[("NaN", &[0xc0, 0x7f]), ("-inf", &[0x80, 0xff])],
            _ => &[],
        };
        for (what, value) in specials {
            if end - begin >= value.len() {
                let mut bytes = bytes.to_vec();
                let at = 8 + header_len + begin;
                bytes[at..at + value.len()].copy_from_slice(value);
                push(format!("NaN/inf: `{name}` first value {what}"), bytes);
            }
        }
    }
    let metadata_edits: [(&str, Option<Value>); 10] = [
        ("removed", None),
        ("an array", Some(serde_json::json!([1, 2]))),
        ("a number value", Some(serde_json::json!({"format": 1}))),
        ("empty", Some(serde_json::json!({}))),
        (
            "wrong format",
            Some(serde_json::json!({"format": "pt", "version": "1"})),
        ),
        (
            "future version",
            Some(serde_json::json!({"format": "fedvlm.payload", "version": "2"})),
        ),
        (
            "negative round",
            Some(
                serde_json::json!({"format": "fedvlm.payload", "version": "1",
                "round": "-1", "num_examples": "3"}),
            ),
        ),
        (
            "huge num_examples",
            Some(
                serde_json::json!({"format": "fedvlm.payload", "version": "1",
                "round": "1", "num_examples": "99999999999999999999999"}),
            ),
        ),
        (
            "float round",
            Some(
                serde_json::json!({"format": "fedvlm.payload", "version": "1",
                "round": "1e3", "num_examples": "3"}),
            ),
        ),
        (
            "NaN round",
            Some(
                serde_json::json!({"format": "fedvlm.payload", "version": "1",
                "round": "NaN", "num_examples": "3"}),
            ),
        ),
    ];
    for (what, value) in metadata_edits {
        push(
            format!("metadata: {what}"),
            parts.with(move |h| match value {
                None => {
                    h.remove("__metadata__");
                }
                Some(v) => {
                    h.insert("__metadata__".into(), v);
                }
            }),
        );
    }
    let garbage = |fill: u8| {
        let mut b = bytes.to_vec();
        b[8..8 + header_len].fill(fill);
        b
    };
    push("header not JSON: all spaces".into(), garbage(b' '));
    push(
        "header not JSON: all 0xff (not UTF-8)".into(),
        garbage(0xff),
    );
    push("header not JSON: all zero bytes".into(), garbage(0));
    push(
        "header not JSON: a JSON array".into(),
        SafetensorsParts::join("[1,2,3]", &parts.data),
    );
    push(
        "header not JSON: deeply nested".into(),
        SafetensorsParts::join(&"[".repeat(100_000), &parts.data),
    );
    let mut extra = bytes.to_vec();
    extra.extend_from_slice(&[0xAB; 13]);
    push("trailing bytes after the data".into(), extra);
    out.extend(
        HUGE.iter()
            .copied()
            .chain([0, 1, header_len as u64 + 1, bytes.len() as u64])
            .map(|value| Mutation::SetU64 { offset: 0, value }),
    );
    out
}

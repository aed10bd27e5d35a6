//! Seeded mutations of valid inputs, and a harness that runs a parser on each mutated input
//! inside `catch_unwind`, for the hostile-input tests (`tests/hostile_*.rs`).
//!
//! Every mutation is deterministic (a [`Rng`] seeded by the test) and prints itself, so a
//! failure names the seed and the exact change to replay it.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// SplitMix64: a tiny seeded generator (no dependency, stable across versions).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A random element of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Length-field values that break naive parsers.
pub const HUGE: [u64; 6] = [
    u64::MAX,
    u64::MAX - 7,
    1 << 63,
    1 << 32,
    u32::MAX as u64,
    (1 << 31) - 1,
];

/// One change to a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    FlipBit {
        /// Byte offset.
        offset: usize,
        /// Bit `0..8`.
        bit: u8,
    },
    /// Overwrites one byte.
    SetByte {
        /// Byte offset.
        offset: usize,
        /// The new value.
        value: u8,
    },
    /// Keeps the first `len` bytes.
    Truncate {
        /// Bytes kept.
        len: usize,
    },
    /// Inserts bytes at an offset.
    Insert {
        /// Byte offset.
        offset: usize,
        /// The inserted bytes.
        bytes: Vec<u8>,
    },
    /// Removes `len` bytes at an offset.
    Remove {
        /// Byte offset.
        offset: usize,
        /// Bytes removed.
        len: usize,
    },
    /// Overwrites 4 bytes with a little-endian `u32`.
    SetU32 {
        /// Byte offset.
        offset: usize,
        /// The value.
        value: u32,
    },
    /// Overwrites 8 bytes with a little-endian `u64`.
    SetU64 {
        /// Byte offset.
        offset: usize,
        /// The value.
        value: u64,
    },
    /// Several mutations applied in order.
    Stack(Vec<Mutation>),
    /// A whole rebuilt input (a structured edit, such as a safetensors header change).
    Whole {
        /// What was changed.
        label: String,
        /// The new input.
        bytes: Vec<u8>,
    },
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FlipBit { offset, bit } => write!(f, "flip bit {bit} at {offset}"),
            Self::SetByte { offset, value } => write!(f, "set byte {offset} = {value:#04x}"),
            Self::Truncate { len } => write!(f, "truncate to {len} bytes"),
            Self::Insert { offset, bytes } => write!(f, "insert {} bytes at {offset}", bytes.len()),
            Self::Remove { offset, len } => write!(f, "remove {len} bytes at {offset}"),
            Self::SetU32 { offset, value } => write!(f, "set u32 at {offset} = {value:#x}"),
            Self::SetU64 { offset, value } => write!(f, "set u64 at {offset} = {value:#x}"),
            Self::Stack(list) => {
                let parts: Vec<String> = list.iter().map(ToString::to_string).collect();
                write!(f, "[{}]", parts.join(", "))
            }
            Self::Whole { label, .. } => write!(f, "{label}"),
        }
    }
}

impl Mutation {
    /// The kind, for grouping outcomes (`flip bit`, `truncate`, a structured edit's label).
    pub fn kind(&self) -> String {
        match self {
            Self::FlipBit { .. } => "flip bit".into(),
            Self::SetByte { .. } => "set byte".into(),
            Self::Truncate { .. } => "truncate".into(),
            Self::Insert { .. } => "insert bytes".into(),
            Self::Remove { .. } => "remove bytes".into(),
            Self::SetU32 { .. } => "u32 field set huge".into(),
            Self::SetU64 { .. } => "u64 field set huge".into(),
            Self::Stack(_) => "stacked mutations".into(),
            Self::Whole { label, .. } => label.split(':').next().unwrap_or(label).to_string(),
        }
    }

    /// The mutated copy of `input` (offsets past the end are clamped).
    pub fn apply(&self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        let clamp = |o: usize, len: usize| o.min(len);
        match self {
            Self::FlipBit { offset, bit } => {
                if let Some(b) = out.get_mut(*offset) {
                    *b ^= 1 << (bit % 8);
                }
            }
            Self::SetByte { offset, value } => {
                if let Some(b) = out.get_mut(*offset) {
                    *b = *value;
                }
            }
            Self::Truncate { len } => out.truncate(*len),
            Self::Insert { offset, bytes } => {
                let at = clamp(*offset, out.len());
                out.splice(at..at, bytes.iter().copied());
            }
            Self::Remove { offset, len } => {
                let at = clamp(*offset, out.len());
                let end = clamp(at + len, out.len());
                out.drain(at..end);
            }
            Self::SetU32 { offset, value } => overwrite(&mut out, *offset, &value.to_le_bytes()),
            Self::SetU64 { offset, value } => overwrite(&mut out, *offset, &value.to_le_bytes()),
            Self::Stack(list) => {
                for m in list {
                    out = m.apply(&out);
                }
            }
            Self::Whole { bytes, .. } => out = bytes.clone(),
        }
        out
    }
}

fn overwrite(out: &mut [u8], offset: usize, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        if let Some(slot) = out.get_mut(offset + i) {
            *slot = *b;
        }
    }
}

/// One random byte-level mutation of an input of `len` bytes; `hot` are offsets worth hitting
/// more often (headers, length fields).
pub fn random(rng: &mut Rng, len: usize, hot: &[usize]) -> Mutation {
    let offset = if !hot.is_empty() && rng.below(3) == 0 {
        (rng.pick(hot) + rng.below(8)).min(len.saturating_sub(1))
    } else {
        rng.below(len)
    };
    match rng.below(8) {
        0 | 1 => Mutation::FlipBit {
            offset,
            bit: rng.below(8) as u8,
        },
        2 => Mutation::SetByte {
            offset,
            value: *rng.pick(&[0, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b']', b',']),
        },
        3 => Mutation::Truncate {
            len: rng.below(len),
        },
        4 => {
            let n = 1 + rng.below(16);
            Mutation::Insert {
                offset,
                bytes: (0..n).map(|_| rng.next_u64() as u8).collect(),
            }
        }
        5 => Mutation::Remove {
            offset,
            len: 1 + rng.below(16),
        },
        6 => Mutation::SetU32 {
            offset,
            value: *rng.pick(&[u32::MAX, 0x8000_0000, 0x7fff_ffff, 0xffff, 0]),
        },
        _ => Mutation::SetU64 {
            offset,
            value: *rng.pick(&HUGE),
        },
    }
}

/// How many times more random cases to draw than CI does: `FEDVLM_HOSTILE_SCALE` (default 1),
/// for longer local sweeps (`FEDVLM_HOSTILE_SCALE=20 cargo test --release --test hostile_data`).
pub fn scale() -> usize {
    std::env::var("FEDVLM_HOSTILE_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `count` (times [`scale`]) random mutations from `seed`; every fourth one stacks two or three.
pub fn random_set(seed: u64, len: usize, hot: &[usize], count: usize) -> Vec<Mutation> {
    let mut rng = Rng::new(seed);
    (0..count * scale())
        .map(|i| {
            if i % 4 == 3 {
                let n = 2 + rng.below(2);
                Mutation::Stack((0..n).map(|_| random(&mut rng, len, hot)).collect())
            } else {
                random(&mut rng, len, hot)
            }
        })
        .collect()
}

/// Truncations at every offset of the first `dense` bytes, then at about `spread` offsets
/// spread over the rest (the last byte included).
pub fn truncations(len: usize, dense: usize, spread: usize) -> Vec<Mutation> {
    let mut lens: Vec<usize> = (0..dense.min(len)).collect();
    let step = (len / spread.max(1)).max(1);
    lens.extend((dense..len).step_by(step));
    lens.push(len.saturating_sub(1));
    lens.sort_unstable();
    lens.dedup();
    lens.into_iter()
        .map(|len| Mutation::Truncate { len })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// safetensors header edits

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

// ---------------------------------------------------------------------------------------------
// the harness

/// Outcomes of running a parser on many hostile inputs; [`Report::finish`] fails the test on
/// any panic, any error message that does not name the input, or any case slower than the
/// limit (a hang guard).
pub struct Report {
    parser: String,
    seed: u64,
    limit: Duration,
    cases: usize,
    ok: usize,
    failures: Vec<String>,
    /// First message seen per mutation kind.
    samples: BTreeMap<String, String>,
}

impl Report {
    /// A report for `parser`, whose mutations were drawn from `seed`.
    pub fn new(parser: &str, seed: u64) -> Self {
        Self {
            parser: parser.to_string(),
            seed,
            limit: Duration::from_secs(10),
            cases: 0,
            ok: 0,
            failures: Vec::new(),
            samples: BTreeMap::new(),
        }
    }

    /// Runs `parse` on the case `mutation`, catching panics. An `Err` must mention `name`
    /// (a file path, `payload`) when given.
    pub fn run<T, E: fmt::Display>(
        &mut self,
        mutation: &Mutation,
        name: Option<&str>,
        parse: impl FnOnce() -> Result<T, E>,
    ) {
        let label = mutation.to_string();
        self.run_labelled(&mutation.kind(), &label, name, parse);
    }

    /// As [`Report::run`], with the case described by `kind` and `label`.
    pub fn run_labelled<T, E: fmt::Display>(
        &mut self,
        kind: &str,
        label: &str,
        name: Option<&str>,
        parse: impl FnOnce() -> Result<T, E>,
    ) {
        self.cases += 1;
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| parse().map_err(|e| e.to_string())));
        let elapsed = start.elapsed();
        let case = format!("{} (seed {}): {label}", self.parser, self.seed);
        if elapsed > Duration::from_secs(1) {
            println!("  slow case ({elapsed:?}): {case}");
        }
        if elapsed > self.limit {
            self.failures
                .push(format!("{case}: took {elapsed:?} (hang guard)"));
        }
        match outcome {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "non-string panic".into());
                self.failures.push(format!("{case}: PANIC {message}"));
            }
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(message)) => {
                if message.trim().is_empty() {
                    self.failures.push(format!("{case}: empty error message"));
                }
                if let Some(name) = name.filter(|n| !message.contains(n)) {
                    self.failures
                        .push(format!("{case}: error does not name {name}: {message}"));
                }
                self.samples
                    .entry(kind.to_string())
                    .or_insert_with(|| format!("{label} -> {message}"));
            }
        }
    }

    /// Prints the summary (`cargo test -- --nocapture` shows it) and fails on any recorded
    /// failure.
    pub fn finish(self) {
        println!(
            "{}: {} cases, {} accepted, {} refused",
            self.parser,
            self.cases,
            self.ok,
            self.cases - self.ok
        );
        for (kind, sample) in &self.samples {
            println!("  [{kind}] {sample}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} hostile inputs to {} failed:\n{}",
            self.failures.len(),
            self.cases,
            self.parser,
            self.failures.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// torch.save zips: in-place mutations of one entry with its CRC fixed

/// CRC-32 (IEEE), as zip and PNG use it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u16_at(bytes: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn u32_at(bytes: &[u8], at: usize) -> usize {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// The data range of the stored (uncompressed) zip entry whose name ends with `suffix`, and
/// the offsets of every CRC field describing it (central directory, local header, and the data
/// descriptor after the data when the entry has one, as `torch.save` writes them).
pub fn zip_entry(bytes: &[u8], suffix: &str) -> Option<(std::ops::Range<usize>, Vec<usize>)> {
    let central = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"PK\x01\x02")
        .map(|(i, _)| i)
        .find(|&at| {
            let name_len = u16_at(bytes, at + 28);
            bytes
                .get(at + 46..at + 46 + name_len)
                .is_some_and(|name| name.ends_with(suffix.as_bytes()))
        })?;
    if u16_at(bytes, central + 10) != 0 {
        return None; // compressed: not mutated in place
    }
    let size = u32_at(bytes, central + 20);
    let local = u32_at(bytes, central + 42);
    let start = local + 30 + u16_at(bytes, local + 26) + u16_at(bytes, local + 28);
    let end = start + size;
    let mut crcs = vec![central + 16, local + 14];
    if u16_at(bytes, local + 6) & 8 != 0 {
        let signed = bytes.get(end..end + 4) == Some(b"PK\x07\x08".as_slice());
        crcs.push(if signed { end + 4 } else { end });
    }
    Some((start..end, crcs))
}

/// `count` same-length random mutations of the zip entry ending with `suffix` (such as the
/// pickle `data.pkl`), each with the entry's CRC recomputed so that the zip layer accepts it
/// and the bytes reach the entry's parser.
pub fn zip_entry_edits(bytes: &[u8], suffix: &str, seed: u64, count: usize) -> Vec<Mutation> {
    let Some((range, crcs)) = zip_entry(bytes, suffix) else {
        return Vec::new();
    };
    let mut rng = Rng::new(seed);
    (0..count * scale())
        .map(|_| {
            let at = range.start + rng.below(range.len());
            let mut out = bytes.to_vec();
            let what = match rng.below(4) {
                0 => {
                    let bit = rng.below(8);
                    out[at] ^= 1 << bit;
                    format!("flip bit {bit} at {at}")
                }
                1 => {
                    let value = *rng.pick(&[0u8, 0xff, 0x7f, 0x80, b'.', b'(', b'q', b'X']);
                    out[at] = value;
                    format!("set byte {at} = {value:#04x}")
                }
                2 => {
                    let value = *rng.pick(&[u32::MAX, 0x7fff_ffff, 0x8000_0000]);
                    overwrite(&mut out[..range.end], at, &value.to_le_bytes());
                    format!("set u32 at {at} = {value:#x}")
                }
                _ => {
                    let value = *rng.pick(&HUGE);
                    overwrite(&mut out[..range.end], at, &value.to_le_bytes());
                    format!("set u64 at {at} = {value:#x}")
                }
            };
            let crc = crc32(&out[range.clone()]).to_le_bytes();
            for &field in &crcs {
                out[field..field + 4].copy_from_slice(&crc);
            }
            Mutation::Whole {
                label: format!("zip entry {suffix} (CRC fixed): {what}"),
                bytes: out,
            }
        })
        .collect()
}

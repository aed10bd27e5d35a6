//! Seeded mutations of valid inputs, and a harness that runs a parser on each mutated input
//! inside `catch_unwind`, for the hostile-input tests (`tests/hostile_*.rs`).
//!
//! Every mutation is deterministic (a [`Rng`] seeded by the test) and prints itself, so a
//! failure names the seed and the exact change to replay it.

use std::fmt;

mod report;
mod safetensors;
mod zip;

// Not every test binary uses every helper.
#[allow(unused_imports)]
pub use report::Report;
#[allow(unused_imports)]
pub use safetensors::{SafetensorsParts, safetensors_edits};
#[allow(unused_imports)]
pub use zip::{crc32, zip_entry, zip_entry_edits};

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

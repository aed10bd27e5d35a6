//! `torch.save` zips: in-place mutations of one entry with its CRC fixed.

use super::{HUGE, Mutation, Rng, overwrite, scale};

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

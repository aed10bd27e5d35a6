//! One shard of the on-disk cache: the entries of a run of consecutive samples in one
//! safetensors file (`encoder` `[ΣS_i, d]` and `prefix` `[ΣT_i, d]` in the cache's dtype,
//! `encoder_len` and `decoder_len` `[n]` as u32), written atomically, and read back one
//! sample at a time (its bytes only: no read amplification when few samples are hot).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use half::f16;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde::Deserialize;

use super::entry::{CacheDtype, PrefixEntry, Values};
use crate::error::{FedError, Result};
use crate::federated::write_atomic;

/// The file of shard `index` in `dir`.
pub(super) fn shard_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index:06}.safetensors"))
}

fn values_bytes(values: &Values, out: &mut Vec<u8>) {
    match values {
        Values::F16(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
        Values::F32(v) => out.extend(v.iter().flat_map(|x| x.to_le_bytes())),
    }
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> FedError {
    FedError::Task(format!("cache shard {}: {reason}", path.display()))
}

/// Writes `entries` (all of `dtype`, width `d_model`) to `path` atomically.
///
/// # Errors
/// [`FedError::Io`] when the file cannot be written.
pub(super) fn write_shard(
    path: &Path,
    entries: &[PrefixEntry],
    dtype: CacheDtype,
    d_model: usize,
) -> Result<()> {
    let (mut encoder, mut prefix) = (Vec::new(), Vec::new());
    let (mut enc_rows, mut dec_rows) = (0, 0);
    let mut enc_lens = Vec::with_capacity(entries.len() * 4);
    let mut dec_lens = Vec::with_capacity(entries.len() * 4);
    for e in entries {
        values_bytes(&e.encoder, &mut encoder);
        values_bytes(&e.prefix, &mut prefix);
        enc_rows += e.encoder_len;
        dec_rows += e.decoder_len;
        enc_lens.extend((e.encoder_len as u32).to_le_bytes());
        dec_lens.extend((e.decoder_len as u32).to_le_bytes());
    }
    let float = match dtype {
        CacheDtype::F16 => Dtype::F16,
        CacheDtype::F32 => Dtype::F32,
    };
    let n = entries.len();
    fn view<'a>(
        path: &Path,
        dtype: Dtype,
        shape: Vec<usize>,
        data: &'a [u8],
    ) -> Result<TensorView<'a>> {
        TensorView::new(dtype, shape, data).map_err(|e| bad(path, e))
    }
    let tensors = vec![
        (
            "encoder",
            view(path, float, vec![enc_rows, d_model], &encoder)?,
        ),
        (
            "prefix",
            view(path, float, vec![dec_rows, d_model], &prefix)?,
        ),
        ("encoder_len", view(path, Dtype::U32, vec![n], &enc_lens)?),
        ("decoder_len", view(path, Dtype::U32, vec![n], &dec_lens)?),
    ];
    let bytes = safetensors::serialize(tensors, None).map_err(|e| bad(path, e))?;
    write_atomic(path, &bytes)
}

/// Where each sample's values lie in a shard file (parsed from its header and length
/// tensors, a few bytes a sample): [`read_entry`] then reads one sample's bytes only.
#[derive(Debug)]
pub(super) struct ShardIndex {
    path: PathBuf,
    /// Absolute byte offsets of the `encoder` and `prefix` data.
    encoder_start: u64,
    prefix_start: u64,
    /// Per sample: first encoder row, encoder rows, first prefix row, prefix rows (16 bytes
    /// a sample: the indexes of every shard read stay in memory).
    entries: Vec<[u32; 4]>,
}

impl ShardIndex {
    /// Number of samples in the shard.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn read_at(file: &mut File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut out))
        .map_err(|e| FedError::io(path, e))?;
    Ok(out)
}

/// A tensor's entry in a safetensors header.
#[derive(Debug, Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads the header and the length tensors of a shard written by [`write_shard`] with
/// `dtype` and width `d_model`.
///
/// # Errors
/// [`FedError::Io`] when the file cannot be read, [`FedError::Task`] when it is not such a
/// shard.
pub(super) fn read_index(path: &Path, dtype: CacheDtype, d_model: usize) -> Result<ShardIndex> {
    let mut file = File::open(path).map_err(|e| FedError::io(path, e))?;
    let size = file.metadata().map_err(|e| FedError::io(path, e))?.len();
    let head = read_at(&mut file, path, 0, 8)?;
    let n = u64::from_le_bytes(head.try_into().map_err(|_| bad(path, "short header"))?);
    if n > (1 << 26) || 8 + n > size {
        return Err(bad(
            path,
            format!("header of {n} bytes in a file of {size}"),
        ));
    }
    let header = read_at(&mut file, path, 8, n as usize)?;
    let mut header: HashMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(path, e))?;
    let data = 8 + n;
    let mut take = |name: &str| -> Result<HeaderEntry> {
        let value = header
            .remove(name)
            .ok_or_else(|| bad(path, format!("no `{name}`")))?;
        let entry: HeaderEntry = serde_json::from_value(value).map_err(|e| bad(path, e))?;
        let [a, b] = entry.data_offsets;
        if a > b || data + b > size {
            return Err(bad(path, format!("`{name}` lies outside the file")));
        }
        Ok(entry)
    };
    let (encoder, prefix) = (take("encoder")?, take("prefix")?);
    let (enc_lens, dec_lens) = (take("encoder_len")?, take("decoder_len")?);
    let mut lens = |entry: &HeaderEntry, name: &str| -> Result<Vec<usize>> {
        let [a, b] = entry.data_offsets;
        if entry.dtype != "U32" || entry.shape.len() != 1 || b - a != 4 * entry.shape[0] as u64 {
            return Err(bad(path, format!("`{name}` is not a u32 vector")));
        }
        let bytes = read_at(&mut file, path, data + a, (b - a) as usize)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect())
    };
    let enc = lens(&enc_lens, "encoder_len")?;
    let dec = lens(&dec_lens, "decoder_len")?;
    if enc.len() != dec.len() {
        return Err(bad(path, "length lists differ"));
    }
    let (expected, width) = match dtype {
        CacheDtype::F16 => ("F16", 2u64),
        CacheDtype::F32 => ("F32", 4u64),
    };
    for (entry, rows, name) in [
        (&encoder, enc.iter().sum::<usize>(), "encoder"),
        (&prefix, dec.iter().sum::<usize>(), "prefix"),
    ] {
        let [a, b] = entry.data_offsets;
        if entry.dtype != expected
            || entry.shape != [rows, d_model]
            || b - a != rows as u64 * d_model as u64 * width
        {
            return Err(bad(
                path,
                format!(
                    "`{name}` is {} {:?}, expected {expected} [{rows}, {d_model}]",
                    entry.dtype, entry.shape
                ),
            ));
        }
    }
    let (mut s, mut t) = (0usize, 0usize);
    let narrow = |v: usize| u32::try_from(v).map_err(|_| bad(path, "over 2^32 rows"));
    let entries = enc
        .iter()
        .zip(&dec)
        .map(|(&e, &d)| {
            let row = [narrow(s)?, narrow(e)?, narrow(t)?, narrow(d)?];
            s += e;
            t += d;
            Ok(row)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ShardIndex {
        path: path.to_path_buf(),
        encoder_start: data + encoder.data_offsets[0],
        prefix_start: data + prefix.data_offsets[0],
        entries,
    })
}

fn values(bytes: &[u8], dtype: CacheDtype) -> Values {
    match dtype {
        CacheDtype::F16 => Values::F16(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        CacheDtype::F32 => Values::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    }
}

/// Reads sample `k` of a shard (its bytes only).
///
/// # Errors
/// [`FedError::Io`] when the file cannot be read, [`FedError::Task`] for `k` out of range.
pub(super) fn read_entry(
    index: &ShardIndex,
    k: usize,
    dtype: CacheDtype,
    d_model: usize,
) -> Result<PrefixEntry> {
    let path = index.path.as_path();
    let [s, encoder_len, t, decoder_len] = index
        .entries
        .get(k)
        .ok_or_else(|| bad(path, format!("no sample {k}")))?
        .map(|v| v as usize);
    let row = (d_model * dtype.bytes()) as u64;
    let mut file = File::open(path).map_err(|e| FedError::io(path, e))?;
    let encoder = read_at(
        &mut file,
        path,
        index.encoder_start + s as u64 * row,
        encoder_len * row as usize,
    )?;
    let prefix = read_at(
        &mut file,
        path,
        index.prefix_start + t as u64 * row,
        decoder_len * row as usize,
    )?;
    Ok(PrefixEntry {
        encoder: values(&encoder, dtype),
        prefix: values(&prefix, dtype),
        encoder_len,
        decoder_len,
    })
}

//! One shard of the on-disk cache: the entries of a run of consecutive samples in one
//! safetensors file (`encoder` `[ΣS_i, d]` and `prefix` `[ΣT_i, d]` in the cache's dtype,
//! `encoder_len` and `decoder_len` `[n]` as u32), written atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use half::f16;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::entry::{CacheDtype, PrefixEntry, Values};
use crate::error::{FedError, Result};
use crate::federated::write_atomic;

/// The entries of one shard, in sample order.
pub(super) type Shard = Vec<Arc<PrefixEntry>>;

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

/// Reads a shard written by [`write_shard`] with `dtype` and width `d_model`.
///
/// # Errors
/// [`FedError::Io`] when the file cannot be read, [`FedError::Task`] when it is not such a
/// shard.
pub(super) fn read_shard(path: &Path, dtype: CacheDtype, d_model: usize) -> Result<Shard> {
    let bytes = std::fs::read(path).map_err(|e| FedError::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    let get = |name: &str| file.tensor(name).map_err(|e| bad(path, e));
    let lens = |name: &str| -> Result<Vec<usize>> {
        let t = get(name)?;
        if t.dtype() != Dtype::U32 {
            return Err(bad(path, format!("`{name}` is not u32")));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect())
    };
    let (enc_lens, dec_lens) = (lens("encoder_len")?, lens("decoder_len")?);
    if enc_lens.len() != dec_lens.len() {
        return Err(bad(path, "length lists differ"));
    }
    let (encoder, prefix) = (get("encoder")?, get("prefix")?);
    let (expected, width) = match dtype {
        CacheDtype::F16 => (Dtype::F16, 2),
        CacheDtype::F32 => (Dtype::F32, 4),
    };
    let rows = |lens: &[usize]| lens.iter().sum::<usize>();
    for (t, n) in [(&encoder, rows(&enc_lens)), (&prefix, rows(&dec_lens))] {
        if t.dtype() != expected || t.shape() != [n, d_model] {
            return Err(bad(
                path,
                format!(
                    "{:?} {:?}, expected {expected:?} [{n}, {d_model}]",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
    }
    let slice = |data: &[u8], start: usize, len: usize| -> Values {
        let bytes = &data[start * d_model * width..(start + len) * d_model * width];
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
    };
    let (mut s, mut t) = (0, 0);
    let mut out = Vec::with_capacity(enc_lens.len());
    for (&encoder_len, &decoder_len) in enc_lens.iter().zip(&dec_lens) {
        out.push(Arc::new(PrefixEntry {
            encoder: slice(encoder.data(), s, encoder_len),
            prefix: slice(prefix.data(), t, decoder_len),
            encoder_len,
            decoder_len,
        }));
        s += encoder_len;
        t += decoder_len;
    }
    Ok(out)
}

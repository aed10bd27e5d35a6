//! `.npy` files, the form Flower's arrays travel in (`stype "numpy.ndarray"`).
//!
//! Writes version 1.0 exactly as `numpy.save` does; reads versions 1.0, 2.0 and 3.0 with
//! little- or big-endian `f2`, `f4` and `f8` data in C order. Everything read is checked against
//! the bytes present before anything is allocated.

use half::f16;

use super::error::FlowerError;
use super::records::{NdArray, NpyDtype};

const MAGIC: &[u8] = b"\x93NUMPY";
/// The longest header accepted (numpy itself refuses headers over 10,000 bytes by default).
const MAX_HEADER: usize = 1 << 16;

/// The `.npy` v1.0 bytes of `array`, byte-for-byte what `numpy.save` writes for the same array.
pub fn encode_npy(array: &NdArray) -> Vec<u8> {
    let shape = match array.shape.as_slice() {
        [] => "()".to_string(),
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}",
        array.dtype.descr()
    );
    // numpy pads with spaces so that magic + version + length + header (with '\n') is a multiple
    // of 64 bytes.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let size = array.dtype.size();
    let mut out = Vec::with_capacity(10 + header.len() + array.values.len() * size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match array.dtype {
        NpyDtype::F16 => array
            .values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        NpyDtype::F32 => array
            .values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        NpyDtype::F64 => array
            .values
            .iter()
            .for_each(|v| out.extend_from_slice(&f64::from(*v).to_le_bytes())),
    }
    out
}

fn err(detail: impl Into<String>) -> FlowerError {
    FlowerError::Npy(detail.into())
}

/// Reads a `.npy` file. `f8` values are narrowed to `f32` (the dtype stays [`NpyDtype::F64`]).
pub fn decode_npy(bytes: &[u8]) -> Result<NdArray, FlowerError> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(err("not a .npy file (no \\x93NUMPY magic)"));
    }
    let (header_len, header_start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            let Some(len) = bytes.get(8..12) else {
                return Err(err("truncated header length"));
            };
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
            (usize::try_from(len).unwrap_or(usize::MAX), 12)
        }
        v => return Err(err(format!("unsupported format version {v}.{}", bytes[7]))),
    };
    if header_len > MAX_HEADER {
        return Err(err(format!("header of {header_len} bytes is too long")));
    }
    let header = bytes
        .get(header_start..header_start + header_len)
        .ok_or_else(|| err("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| err("header is not text"))?;
    let parsed = parse_header(header)?;
    let data = &bytes[header_start + header_len..];
    let count = parsed
        .shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .ok_or_else(|| err("shape overflows"))?;
    let expected = count
        .checked_mul(parsed.dtype.size())
        .ok_or_else(|| err("shape overflows"))?;
    if data.len() != expected {
        return Err(err(format!(
            "shape {:?} of {} needs {expected} data bytes, found {}",
            parsed.shape,
            parsed.dtype.descr(),
            data.len()
        )));
    }
    let size = parsed.dtype.size();
    let values = data
        .chunks_exact(size)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(c);
            if parsed.big_endian {
                b[..size].reverse();
            }
            match parsed.dtype {
                NpyDtype::F16 => f16::from_le_bytes([b[0], b[1]]).to_f32(),
                NpyDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                NpyDtype::F64 => f64::from_le_bytes(b) as f32,
            }
        })
        .collect();
    Ok(NdArray {
        dtype: parsed.dtype,
        shape: parsed.shape,
        values,
    })
}

struct Header {
    dtype: NpyDtype,
    big_endian: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal of a header: `{'descr': '<f4', 'fortran_order': False,
/// 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<Header, FlowerError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => descr = Some(p.string()?),
            "fortran_order" => fortran = Some(p.boolean()?),
            "shape" => shape = Some(p.tuple()?),
            other => return Err(err(format!("unexpected header key `{other}`"))),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    let descr = descr.ok_or_else(|| err("header has no descr"))?;
    if fortran.ok_or_else(|| err("header has no fortran_order"))? {
        return Err(err("fortran_order arrays are not supported"));
    }
    let shape = shape.ok_or_else(|| err("header has no shape"))?;
    let (big_endian, kind) = match descr.as_bytes().first() {
        Some(b'<') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        Some(b'=') => (cfg!(target_endian = "big"), &descr[1..]),
        _ => (false, descr.as_str()),
    };
    let dtype = match kind {
        "f2" => NpyDtype::F16,
        "f4" => NpyDtype::F32,
        "f8" => NpyDtype::F64,
        _ => return Err(err(format!("unsupported dtype `{descr}` (f2, f4, f8 only)"))),
    };
    Ok(Header {
        dtype,
        big_endian,
        shape,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), FlowerError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(err(format!("malformed header: expected `{}`", c as char)))
        }
    }

    fn string(&mut self) -> Result<String, FlowerError> {
        self.skip_ws();
        let quote = match self.s.get(self.i) {
            Some(q @ (b'\'' | b'"')) => *q,
            _ => return Err(err("malformed header: expected a string")),
        };
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|c| *c == quote)
            .ok_or_else(|| err("malformed header: unterminated string"))?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }

    fn boolean(&mut self) -> Result<bool, FlowerError> {
        self.skip_ws();
        for (word, value) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(value);
            }
        }
        Err(err("malformed header: expected True or False"))
    }

    fn tuple(&mut self) -> Result<Vec<usize>, FlowerError> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(dims);
            }
            self.skip_ws();
            let start = self.i;
            while self.s.get(self.i).is_some_and(u8::is_ascii_digit) {
                self.i += 1;
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let dim = digits
                .parse::<usize>()
                .map_err(|_| err("malformed header: bad shape"))?;
            if dims.len() >= 64 {
                return Err(err("more than 64 dimensions"));
            }
            dims.push(dim);
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

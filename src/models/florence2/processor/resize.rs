//! Pillow's `Image.resize` for 8-bit RGB images, reimplemented bit for bit.
//!
//! Pillow (`libImaging/Resample.c`) resizes in two separable passes, skipping a pass whose size
//! does not change: horizontal then vertical, except that since Pillow 13 the vertical pass
//! comes first when the height shrinks much more than the width ([`PassOrder`]). For each output pixel it weighs the input
//! pixels within `support * scale` of the pixel centre (`scale = max(in/out, 1)`, so
//! downsampling widens the filter: antialiasing), normalises the weights to sum to 1, turns
//! them into fixed-point integers with 22 fractional bits, and accumulates `u8 * weight` in
//! integers with a rounding offset, clipping to 0..=255 after each pass. Doing the same integer
//! arithmetic here gives the same bytes as Pillow.

/// A resampling filter of Pillow's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    /// `Image.BILINEAR` (PIL 2): the triangle filter, support 1.
    Bilinear,
    /// `Image.BICUBIC` (PIL 3): Keys' cubic with a = -0.5, support 2. Florence-2's setting.
    Bicubic,
}

impl Resample {
    /// The filter for PIL's integer code (`resample` in a `preprocessor_config.json`).
    pub fn from_pil_code(code: u32) -> Option<Self> {
        match code {
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Bilinear => 1.0,
            Self::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Self::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// The fixed-point weights of one axis: for output `i`, input pixels
/// `first[i] .. first[i] + count[i]` with weights `weights[i * ksize ..]`.
struct Coeffs {
    ksize: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`.
fn precompute(in_size: usize, out_size: usize, filter: Resample) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut first = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut kk = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's `(int)` truncates toward zero before the clamp.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, k) in kk.iter_mut().enumerate().take(n) {
            let w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            *k = w;
            ww += w;
        }
        let row = &mut weights[xx * ksize..(xx + 1) * ksize];
        for (x, k) in kk.iter().enumerate().take(n) {
            let k = if ww != 0.0 { k / ww } else { *k };
            let fixed = k * f64::from(1u32 << PRECISION_BITS);
            row[x] = if k < 0.0 {
                (fixed - 0.5) as i32
            } else {
                (fixed + 0.5) as i32
            };
        }
        first.push(xmin);
        count.push(n);
    }
    Coeffs {
        ksize,
        first,
        count,
        weights,
    }
}

fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// The order of the two passes. Their results differ by rounding (each pass clips to `u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PassOrder {
    /// Pillow 13's choice: vertical first when the height shrinks by more than twice as many
    /// pixels as the width (`in_h - out_h > 0 && in_h - out_h > 2 * (in_w - out_w)`),
    /// horizontal first otherwise (python-pillow/Pillow#9549).
    #[default]
    Pillow13,
    /// Always horizontal first: Pillow 12 and earlier.
    HorizontalFirst,
}

impl PassOrder {
    /// Whether the vertical pass runs first for this resize.
    pub fn vertical_first(
        self,
        width: usize,
        height: usize,
        new_width: usize,
        new_height: usize,
    ) -> bool {
        match self {
            Self::HorizontalFirst => false,
            Self::Pillow13 => {
                let shrink_y = height as i64 - new_height as i64;
                let shrink_x = width as i64 - new_width as i64;
                shrink_y > 0 && shrink_y > 2 * shrink_x
            }
        }
    }
}

/// Resizes an interleaved RGB `u8` image (`width * height * 3` bytes, row-major) to
/// `new_width x new_height` exactly as Pillow 13's `Image.resize(.., resample)` does for an
/// `RGB` image ([`PassOrder::Pillow13`]). `new_width` and `new_height` must be positive.
pub fn resize_rgb8(
    src: &[u8],
    width: usize,
    height: usize,
    new_width: usize,
    new_height: usize,
    filter: Resample,
) -> Vec<u8> {
    resize_rgb8_ordered(
        src,
        (width, height),
        (new_width, new_height),
        filter,
        PassOrder::Pillow13,
    )
}

/// [`resize_rgb8`] with the passes in `order` (`(width, height)` pairs).
pub fn resize_rgb8_ordered(
    src: &[u8],
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    filter: Resample,
    order: PassOrder,
) -> Vec<u8> {
    let image = src.to_vec();
    if order.vertical_first(width, height, new_width, new_height) {
        let image = vertical_pass(image, width, height, new_height, filter);
        horizontal_pass(image, width, new_height, new_width, filter)
    } else {
        let image = horizontal_pass(image, width, height, new_width, filter);
        vertical_pass(image, new_width, height, new_height, filter)
    }
}

/// Resamples every row of a `width x height` image to `new_width` (no-op when equal).
fn horizontal_pass(
    image: Vec<u8>,
    width: usize,
    height: usize,
    new_width: usize,
    filter: Resample,
) -> Vec<u8> {
    if new_width == width {
        return image;
    }
    let c = precompute(width, new_width, filter);
    let mut out = vec![0u8; new_width * height * 3];
    for y in 0..height {
        let row = &image[y * width * 3..(y + 1) * width * 3];
        for xx in 0..new_width {
            let k = &c.weights[xx * c.ksize..xx * c.ksize + c.count[xx]];
            let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
            for (x, &kx) in k.iter().enumerate() {
                let p = (c.first[xx] + x) * 3;
                for ch in 0..3 {
                    ss[ch] += i64::from(row[p + ch]) * i64::from(kx);
                }
            }
            let o = (y * new_width + xx) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

/// Resamples every column of a `width x height` image to `new_height` (no-op when equal).
fn vertical_pass(
    image: Vec<u8>,
    width: usize,
    height: usize,
    new_height: usize,
    filter: Resample,
) -> Vec<u8> {
    if new_height == height {
        return image;
    }
    let c = precompute(height, new_height, filter);
    let mut out = vec![0u8; width * new_height * 3];
    for yy in 0..new_height {
        let k = &c.weights[yy * c.ksize..yy * c.ksize + c.count[yy]];
        for xx in 0..width {
            let mut ss = [1i64 << (PRECISION_BITS - 1); 3];
            for (y, &ky) in k.iter().enumerate() {
                let p = ((c.first[yy] + y) * width + xx) * 3;
                for ch in 0..3 {
                    ss[ch] += i64::from(image[p + ch]) * i64::from(ky);
                }
            }
            let o = (yy * width + xx) * 3;
            for ch in 0..3 {
                out[o + ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_rgb8(&src, 5, 4, 5, 4, Resample::Bicubic), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 9 * 7 * 3];
        for (w, h) in [(4, 3), (20, 15), (9, 2)] {
            let out = resize_rgb8(&src, 9, 7, w, h, Resample::Bicubic);
            assert!(out.iter().all(|&v| v == 200), "{w}x{h}");
        }
    }
}

//! Image pre-processing: decode, convert to RGB, resize, rescale, normalise, as transformers'
//! `CLIPImageProcessorPil` configured by Florence-2's `preprocessor_config.json`.
//!
//! How close it is to transformers 5.24 (tests/florence2_text/pixels.rs, fixtures made with Pillow 13):
//! * from decoded pixels (PNG, RGB or RGBA), `pixel_values` are bit-identical to the PIL
//!   backend's (max abs difference 0, downsampling, upsampling and non-square sizes): the
//!   resize repeats Pillow 13's fixed-point bicubic, pass order included
//!   (`tests/florence2_resize.rs`: 32 shapes, byte for byte), the rest transformers' float
//!   steps. Pillow 12 and earlier always resized horizontally first: on tall images they differ
//!   from Pillow 13 by a few levels ([`super::resize::PassOrder`]);
//! * transformers' default backend (torchvision) differs from Pillow itself by up to one 8-bit
//!   level (0.0175 in normalised units on the fixture), so from ours by the same;
//! * JPEG decoding (`image`'s zune-jpeg vs Pillow's libjpeg-turbo) differs by up to 3 levels on
//!   a 4:2:0 fixture, 0.052 in normalised units after resizing to 64x64.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use image::DynamicImage;
use serde::Deserialize;

use super::ProcessorError;
use super::resize::{Resample, resize_rgb8};

/// The largest output height or width [`preprocess_rgb8`] makes (and a
/// `preprocessor_config.json` may ask for): 8,192 pixels, ten times Florence-2's 768, small
/// enough that `3 * H * W` values fit in memory.
const MAX_OUTPUT_SIDE: usize = 8_192;

/// ImageNet's channel means, Florence-2's `image_mean`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's channel standard deviations, Florence-2's `image_std`.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How images become `pixel_values`.
///
/// The default is Florence-2's: resize straight to 768x768 with Pillow's bicubic filter (no
/// aspect ratio kept, no crop), multiply by 1/255, subtract [`IMAGENET_MEAN`] and divide by
/// [`IMAGENET_STD`].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Output height in pixels.
    pub height: usize,
    /// Output width in pixels.
    pub width: usize,
    /// The resampling filter (Pillow's).
    pub resample: Resample,
    /// Whether to resize at all (`do_resize`); without it every image must already have the
    /// output size.
    pub do_resize: bool,
    /// The rescale factor (`rescale_factor`, 1/255), or `None` for `do_rescale: false`.
    pub rescale_factor: Option<f64>,
    /// Per-channel mean and standard deviation, or `None` for `do_normalize: false`.
    pub normalize: Option<([f32; 3], [f32; 3])>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            height: 768,
            width: 768,
            resample: Resample::Bicubic,
            do_resize: true,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((IMAGENET_MEAN, IMAGENET_STD)),
        }
    }
}

#[derive(Deserialize)]
struct SizeJson {
    height: Option<usize>,
    width: Option<usize>,
    shortest_edge: Option<usize>,
}

#[derive(Deserialize)]
struct PreprocessorJson {
    size: Option<SizeJson>,
    resample: Option<u32>,
    do_resize: Option<bool>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
    do_center_crop: Option<bool>,
}

fn channels(values: Option<Vec<f32>>, default: [f32; 3], field: &str) -> Result<[f32; 3], String> {
    match values {
        None => Ok(default),
        Some(v) => <[f32; 3]>::try_from(v.as_slice())
            .map_err(|_| format!("`{field}` must have 3 values, found {}", v.len())),
    }
}

impl ImageConfig {
    /// The same configuration at another output size.
    pub fn with_size(mut self, height: usize, width: usize) -> Self {
        self.height = height;
        self.width = width;
        self
    }

    /// Reads a `preprocessor_config.json` (Microsoft's or transformers'). Missing fields take
    /// Florence-2's defaults; a centre crop, a `shortest_edge` size or a filter other than
    /// bilinear/bicubic is refused, since Florence-2 uses none of them.
    pub fn from_preprocessor_config(path: impl AsRef<Path>) -> Result<Self, ProcessorError> {
        let path = path.as_ref();
        let bad = |reason: String| ProcessorError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| ProcessorError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let json: PreprocessorJson = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut config = Self::default();
        if let Some(size) = json.size {
            match (size.height, size.width, size.shortest_edge) {
                (Some(h), Some(w), _)
                    if (1..=MAX_OUTPUT_SIDE).contains(&h) && (1..=MAX_OUTPUT_SIDE).contains(&w) =>
                {
                    config = config.with_size(h, w)
                }
                _ => {
                    return Err(bad(format!(
                        "`size` must have `height` and `width` in 1..={MAX_OUTPUT_SIDE}"
                    )));
                }
            }
        }
        if json.do_center_crop == Some(true) {
            return Err(bad("`do_center_crop: true` is not supported".into()));
        }
        if let Some(code) = json.resample {
            config.resample = Resample::from_pil_code(code)
                .ok_or_else(|| bad(format!("`resample: {code}` is not supported (2 or 3)")))?;
        }
        config.do_resize = json.do_resize.unwrap_or(true);
        config.rescale_factor = match json.do_rescale.unwrap_or(true) {
            true => Some(json.rescale_factor.unwrap_or(1.0 / 255.0)),
            false => None,
        };
        config.normalize = match json.do_normalize.unwrap_or(true) {
            true => Some((
                channels(json.image_mean, IMAGENET_MEAN, "image_mean").map_err(&bad)?,
                channels(json.image_std, IMAGENET_STD, "image_std").map_err(&bad)?,
            )),
            false => None,
        };
        Ok(config)
    }
}

/// A batch of pre-processed images, `[N, 3, H, W]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    /// The values, `N * 3 * H * W` of them.
    pub data: Vec<f32>,
    /// `[N, 3, H, W]`.
    pub shape: [usize; 4],
}

impl PixelValues {
    /// The batch as a burn tensor `[N, 3, H, W]`.
    pub fn to_tensor<B: Backend>(&self, device: &B::Device) -> Tensor<B, 4> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape), device)
    }
}

/// Reads an image file (PNG or JPEG).
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage, ProcessorError> {
    let path = path.as_ref();
    image::open(path).map_err(|e| ProcessorError::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The image as interleaved RGB bytes, as transformers' `convert_to_rgb` makes it: an image
/// with an alpha channel is composited onto white with Pillow's `alpha_composite` integer
/// arithmetic, a grey image is repeated over the three channels. 16-bit images are first
/// reduced to 8 bits by the `image` crate (rounding, where Pillow may truncate).
pub fn to_rgb8(image: &DynamicImage) -> (Vec<u8>, usize, usize) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if !image.color().has_alpha() {
        return (image.to_rgb8().into_raw(), w, h);
    }
    let rgba = image.to_rgba8().into_raw();
    let mut out = Vec::with_capacity(w * h * 3);
    for px in rgba.chunks_exact(4) {
        let a = u32::from(px[3]);
        if a == 0 {
            out.extend_from_slice(&[255, 255, 255]);
            continue;
        }
        // Pillow's ImagingAlphaComposite with an opaque white destination (7 precision bits).
        const BITS: u32 = 7;
        let blend = 255 * (255 - a);
        let outa255 = a * 255 + blend;
        let coef1 = a * 255 * 255 * (1 << BITS) / outa255;
        let coef2 = 255 * (1 << BITS) - coef1;
        for &c in &px[..3] {
            let tmp = u32::from(c) * coef1 + 255 * coef2 + (0x80 << BITS);
            out.push(((((tmp >> 8) + tmp) >> 8) >> BITS) as u8);
        }
    }
    (out, w, h)
}

/// Pre-processes one RGB image (interleaved bytes) into `3 * H * W` values, channels first.
pub fn preprocess_rgb8(
    rgb: &[u8],
    width: usize,
    height: usize,
    config: &ImageConfig,
) -> Result<Vec<f32>, ProcessorError> {
    let expected = width.checked_mul(height).and_then(|n| n.checked_mul(3));
    if width == 0 || height == 0 || expected != Some(rgb.len()) {
        return Err(ProcessorError::ImageShape(format!(
            "{} bytes for a {width}x{height} RGB image",
            rgb.len()
        )));
    }
    let resized;
    let pixels = if config.do_resize {
        check_output_size(config)?;
        resized = resize_rgb8(
            rgb,
            width,
            height,
            config.width,
            config.height,
            config.resample,
        );
        &resized[..]
    } else if (width, height) == (config.width, config.height) {
        rgb
    } else {
        return Err(ProcessorError::ImageShape(format!(
            "image is {width}x{height}, expected {}x{} (resizing is off)",
            config.width, config.height
        )));
    };
    let plane = config.width * config.height;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in pixels.chunks_exact(3).enumerate() {
        for ch in 0..3 {
            // transformers rescales in float64 then casts to float32, and normalises in float32.
            let mut v = match config.rescale_factor {
                Some(s) => (f64::from(px[ch]) * s) as f32,
                None => f32::from(px[ch]),
            };
            if let Some((mean, std)) = &config.normalize {
                v = (v - mean[ch]) / std[ch];
            }
            out[ch * plane + i] = v;
        }
    }
    Ok(out)
}

/// Refuses an output size of zero or above [`MAX_OUTPUT_SIDE`] (the resize tables and the
/// output are sized by it).
fn check_output_size(config: &ImageConfig) -> Result<(), ProcessorError> {
    let side = 1..=MAX_OUTPUT_SIDE;
    if side.contains(&config.width) && side.contains(&config.height) {
        Ok(())
    } else {
        Err(ProcessorError::ImageShape(format!(
            "output size {}x{} must be in 1..={MAX_OUTPUT_SIDE} on each side",
            config.width, config.height
        )))
    }
}

/// Pre-processes a batch of decoded images into `[N, 3, H, W]` pixel values.
pub fn preprocess_images(
    images: &[DynamicImage],
    config: &ImageConfig,
) -> Result<PixelValues, ProcessorError> {
    check_output_size(config)?;
    let mut data = Vec::with_capacity(images.len() * 3 * config.height * config.width);
    for image in images {
        let (rgb, w, h) = to_rgb8(image);
        data.extend(preprocess_rgb8(&rgb, w, h, config)?);
    }
    Ok(PixelValues {
        data,
        shape: [images.len(), 3, config.height, config.width],
    })
}

//! The cache build's batch size from free memory (when the user gives none).
//!
//! [`sample_peak_bytes`] estimates one sample's peak activation bytes in the frozen prefix at
//! the model's size; [`choose_batch`] divides the free memory ([`free_memory`]: `MemAvailable`
//! of `/proc/meminfo` on the CPU, the device's free memory on CUDA) by it with a safety factor
//! and clamps the result to `[1, MAX_BATCH]`.

use burn::prelude::*;

use crate::error::{FedError, Result};
use crate::experiments::vqa::sample::VqaSample;
use crate::models::florence2::Florence2;

/// Largest batch the cache build derives from free memory.
pub const MAX_BATCH: usize = 64;
/// The estimate of a sample's peak is multiplied by this (allocator slack, kernels'
/// temporaries, what the estimate leaves out).
pub const SAFETY_FACTOR: u64 = 2;
/// Share of the free memory the build may use, in percent (the rest stays for the process
/// and others).
pub const USABLE_PERCENT: u64 = 75;

/// What one frozen-prefix forward pass of one sample works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleShape {
    /// Side of the square preprocessed image (768 for Florence-2).
    pub image_side: usize,
    /// Channels of the vision tower's first stage (128 for base).
    pub vision_dim: usize,
    /// Stride of the vision tower's first patch embedding (4).
    pub vision_stride: usize,
    /// Width of the language model (768 for base).
    pub d_model: usize,
    /// Encoder positions: image tokens plus prompt tokens.
    pub encoder_len: usize,
    /// Decoder positions (answer tokens).
    pub decoder_len: usize,
    /// Bytes of one float (4 for f32, 2 for f16/bf16).
    pub float_bytes: usize,
}

impl SampleShape {
    /// The shape of the longest sample of `samples` (image, prompt and answer lengths each at
    /// their maximum) through `model`, in floats of `float_bytes`.
    pub fn of<B: Backend>(model: &Florence2<B>, samples: &[VqaSample], float_bytes: usize) -> Self {
        let conv = &model.vision_tower.convs.first().map(|c| &c.conv);
        let (vision_dim, vision_stride) = conv
            .map(|c| (c.weight.lazy_shape()[0], c.stride[0].max(1)))
            .unwrap_or((128, 4));
        let image_side = samples.iter().map(|s| s.image_size).max().unwrap_or(768);
        // DaViT downsamples by the first stride then by 2 three times; the projector adds one
        // (pooled) token per last-stage position plus one global token.
        let last_side = image_side / (vision_stride * 8).max(1);
        let image_tokens = last_side * last_side + 1;
        let prompt = samples.iter().map(|s| s.prompt_len()).max().unwrap_or(0);
        let answer = samples.iter().map(|s| s.answer_len()).max().unwrap_or(0);
        Self {
            image_side,
            vision_dim,
            vision_stride,
            d_model: model.language_model.d_model(),
            encoder_len: image_tokens + prompt,
            decoder_len: answer,
            float_bytes,
        }
    }
}

/// An estimate of one sample's peak activation bytes in the frozen prefix (no gradients).
///
/// The vision tower's first stage dominates: `(side / stride)^2` positions of `vision_dim`
/// channels, about `6 + 2 * 4` such tensors alive at once (input, norm, q/k/v, attention
/// output, the 4x MLP hidden and its activation), plus the window attention's scores
/// (12 x 12 windows, `vision_dim / 32` heads). The encoder and decoder keep about 14 tensors of
/// `len x d_model` (the 4x feed-forward included) plus `heads x len^2` attention scores
/// (`d_model / 64` heads). Saturates instead of overflowing.
pub fn sample_peak_bytes(shape: &SampleShape) -> u64 {
    let u = |x: usize| x as u64;
    let positions = u(shape.image_side / shape.vision_stride.max(1)).saturating_pow(2);
    let heads = u((shape.vision_dim / 32).max(1));
    let window = 12u64 * 12;
    let pixels = u(shape.image_side).saturating_pow(2).saturating_mul(3);
    let vision = positions
        .saturating_mul(
            u(shape.vision_dim)
                .saturating_mul(14)
                .saturating_add(window * heads),
        )
        .saturating_add(pixels);
    let text = |len: usize| {
        let len = u(len);
        let text_heads = u((shape.d_model / 64).max(1));
        len.saturating_mul(u(shape.d_model).saturating_mul(14))
            .saturating_add(text_heads.saturating_mul(len.saturating_pow(2)))
    };
    let values = vision
        .saturating_add(text(shape.encoder_len))
        .saturating_add(text(shape.decoder_len));
    values.saturating_mul(u(shape.float_bytes.max(1)))
}

/// The batch size the cache build chose and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChoice {
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Samples per batch that fit before clamping (0: not even one).
    pub fits: u64,
    /// Why (for the log).
    pub reason: String,
}

/// The batch size that fits `free_bytes`: [`USABLE_PERCENT`] of it divided by
/// `per_sample_bytes x` [`SAFETY_FACTOR`] `x in_flight` (batches computed at once), clamped to
/// `[1, max_batch.min(MAX_BATCH)]`.
///
/// # Errors
/// [`FedError::InvalidConfig`] when `per_sample_bytes`, `in_flight` or `max_batch` is 0.
pub fn choose_batch(
    free_bytes: u64,
    per_sample_bytes: u64,
    in_flight: usize,
    max_batch: usize,
) -> Result<BatchChoice> {
    if per_sample_bytes == 0 {
        return Err(FedError::config("per_sample_bytes", "must be positive"));
    }
    if in_flight == 0 || max_batch == 0 {
        return Err(FedError::config(
            "in_flight/max_batch",
            "must be at least 1",
        ));
    }
    let usable = free_bytes / 100 * USABLE_PERCENT;
    let per_batch_sample = per_sample_bytes
        .saturating_mul(SAFETY_FACTOR)
        .saturating_mul(in_flight as u64);
    let fits = usable / per_batch_sample;
    let cap = max_batch.min(MAX_BATCH);
    let batch_size = usize::try_from(fits).unwrap_or(usize::MAX).clamp(1, cap);
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    let reason = format!(
        "{:.0} MiB free, {USABLE_PERCENT}% usable, about {:.1} MiB a sample x{SAFETY_FACTOR} \
         safety x{in_flight} batch(es) in flight: {fits} fit, clamped to [1, {cap}]",
        mib(free_bytes),
        mib(per_sample_bytes),
    );
    Ok(BatchChoice {
        batch_size,
        fits,
        reason,
    })
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => value.checked_mul(1024),
        _ => None,
    }
}

/// Free memory where `B` computes, in bytes: `MemAvailable` on a CPU backend (Linux only),
/// the device's free memory on CUDA (with the `cuda` feature); `None` where unknown.
pub fn free_memory<B: Backend>(device: &B::Device) -> Option<u64> {
    if super::is_cpu_backend::<B>(device) {
        return std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| parse_mem_available(&text));
    }
    if B::name(device).to_ascii_lowercase().contains("cuda") {
        return cuda_free_memory(device.to_id().index_id as usize);
    }
    None
}

#[cfg(feature = "cuda")]
fn cuda_free_memory(ordinal: usize) -> Option<u64> {
    let context = cudarc::driver::CudaContext::new(ordinal).ok()?;
    let (free, _total) = context.mem_get_info().ok()?;
    u64::try_from(free).ok()
}

#[cfg(not(feature = "cuda"))]
fn cuda_free_memory(_ordinal: usize) -> Option<u64> {
    None
}

/// Largest batch the CPU build derives: 1, the fastest per sample on burn's CPU kernels
/// (BENCHMARKS.md: 6.8 s a base-size sample at 1, 9.7 s at 16); memory then only decides
/// whether batches run in parallel on rayon's threads.
pub const CPU_MAX_BATCH: usize = 1;

impl super::CacheConfig {
    /// [`super::CacheConfig::for_backend`] with the batch size derived from free memory
    /// ([`free_memory`], [`sample_peak_bytes`] of `samples`' longest through `model` in
    /// `self.precision`, [`choose_batch`]). On the CPU the batch stays at most
    /// [`CPU_MAX_BATCH`] and parallel batches are turned off when the threads' samples do not
    /// fit; on other backends one batch is in flight, up to [`MAX_BATCH`]. Where free memory is
    /// unknown the backend's default stays. Returns the configuration and why (for the log).
    pub fn with_memory_batch<B: Backend>(
        self,
        model: &Florence2<B>,
        samples: &[VqaSample],
        device: &B::Device,
    ) -> Result<(Self, String)> {
        let Some(free) = free_memory::<B>(device) else {
            return Ok((
                self,
                format!(
                    "free memory unknown on this backend: default batch {}",
                    self.batch_size
                ),
            ));
        };
        let float_bytes = match self.precision {
            crate::models::Precision::F32 => 4,
            _ => 2,
        };
        let per_sample = sample_peak_bytes(&SampleShape::of(model, samples, float_bytes));
        let cpu = super::is_cpu_backend::<B>(device);
        let max_batch = if cpu { CPU_MAX_BATCH } else { MAX_BATCH };
        let in_flight = if self.parallel {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let mut choice = choose_batch(free, per_sample, in_flight, max_batch)?;
        let mut parallel = self.parallel;
        if parallel && choice.fits == 0 {
            choice = choose_batch(free, per_sample, 1, max_batch)?;
            choice
                .reason
                .push_str("; parallel batches off (threads' samples do not fit)");
            parallel = false;
        }
        let config = Self {
            batch_size: choice.batch_size,
            parallel,
            ..self
        };
        Ok((config, choice.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn the_batch_is_free_memory_over_a_safe_sample_clamped() {
        // 100 GiB free: 75 GiB usable; 256 MiB a sample x2 safety = 512 MiB.
        let one = choose_batch(100 * GIB, 256 * MIB, 1, MAX_BATCH).unwrap();
        assert_eq!((one.fits, one.batch_size), (150, 64));
        // Four batches in flight share it: 75 GiB / 2 GiB = 37.
        let four = choose_batch(100 * GIB, 256 * MIB, 4, MAX_BATCH).unwrap();
        assert_eq!((four.fits, four.batch_size), (37, 37));
        // 2 GiB free: 1.5 GiB usable, 2 fit.
        let small = choose_batch(2 * GIB, 256 * MIB, 1, MAX_BATCH).unwrap();
        assert_eq!((small.fits, small.batch_size), (2, 2));
        assert!(small.reason.contains("2048 MiB free"), "{}", small.reason);
        // Not even one fits: still 1 (the build then may fail, as with a user's batch).
        let none = choose_batch(100 * MIB, 256 * MIB, 1, MAX_BATCH).unwrap();
        assert_eq!((none.fits, none.batch_size), (0, 1));
        // A lower cap wins; above MAX_BATCH it is MAX_BATCH.
        assert_eq!(choose_batch(100 * GIB, MIB, 1, 1).unwrap().batch_size, 1);
        assert_eq!(
            choose_batch(100 * GIB, MIB, 1, 1000).unwrap().batch_size,
            64
        );
        assert_eq!(choose_batch(u64::MAX, 1, 1, 1000).unwrap().batch_size, 64);
    }

    #[test]
    fn zero_sizes_are_typed_errors() {
        assert!(matches!(
            choose_batch(GIB, 0, 1, 8),
            Err(FedError::InvalidConfig { .. })
        ));
        assert!(choose_batch(GIB, MIB, 0, 8).is_err());
        assert!(choose_batch(GIB, MIB, 1, 0).is_err());
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        let text = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n\
                    MemAvailable:   16000000 kB\nBuffers: 1 kB\n";
        assert_eq!(parse_mem_available(text), Some(16_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: 5 MB\n"), None);
    }

    fn base(float_bytes: usize) -> SampleShape {
        SampleShape {
            image_side: 768,
            vision_dim: 128,
            vision_stride: 4,
            d_model: 768,
            encoder_len: 577 + 44,
            decoder_len: 256,
            float_bytes,
        }
    }

    #[test]
    fn a_base_sample_peaks_at_a_few_hundred_mib() {
        let f32_bytes = sample_peak_bytes(&base(4));
        // 192^2 x (128 x 14 + 144 x 4) + 3 x 768^2 vision values, 621 and 256 text rows.
        let vision = 192 * 192 * (128 * 14 + 144 * 4) + 3 * 768 * 768;
        let text = |l: u64| l * 768 * 14 + 12 * l * l;
        assert_eq!(f32_bytes, 4 * (vision + text(621) + text(256)));
        assert!((300 * MIB..600 * MIB).contains(&f32_bytes), "{f32_bytes}");
        assert_eq!(sample_peak_bytes(&base(2)) * 2, f32_bytes);
        let bigger = SampleShape {
            image_side: 1536,
            ..base(4)
        };
        assert!(sample_peak_bytes(&bigger) > 3 * f32_bytes);
        let huge = SampleShape {
            image_side: usize::MAX,
            vision_stride: 1,
            ..base(4)
        };
        assert_eq!(sample_peak_bytes(&huge), u64::MAX);
    }
}

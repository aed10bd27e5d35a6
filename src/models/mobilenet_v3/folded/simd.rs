//! Compiling a kernel for the CPU's vector extensions, chosen at run time.
//!
//! The crate is built for the baseline `x86_64` (SSE2); [`multiversion`] compiles a kernel
//! also for AVX-512 and for AVX2 with FMA and calls the widest the CPU supports (a cached
//! feature check per call). The fused multiply-add ([`madd`]) is used only where the CPU has
//! one: elsewhere `mul_add` would be a slow library call.

/// Set by tests to run the baseline build of every kernel, whatever the CPU has.
#[cfg(test)]
pub(crate) static BASELINE_ONLY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Whether [`multiversion`] may pick a vector extension (always, outside tests).
#[inline(always)]
pub(crate) fn vectors_allowed() -> bool {
    #[cfg(test)]
    {
        !BASELINE_ONLY.load(std::sync::atomic::Ordering::SeqCst)
    }
    #[cfg(not(test))]
    {
        true
    }
}

/// `acc + s * t`, fused (one rounding) when `FMA`.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(acc: f32, s: f32, t: f32) -> f32 {
    if FMA { s.mul_add(t, acc) } else { acc + s * t }
}

/// Defines `fn $name($args)` running `$body` compiled for the widest vector extension the CPU
/// has (`FMA` is a `const bool` in `$body`).
macro_rules! multiversion {
    ($name:ident ($($arg:ident: $ty:ty),*) $body:block) => {
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic<const FMA: bool>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) {
                    generic::<true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) {
                    generic::<true>($($arg),*)
                }
                let vectors = super::simd::vectors_allowed();
                if vectors
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if vectors
                    && std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has every feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic::<false>($($arg),*)
        }
    };
}

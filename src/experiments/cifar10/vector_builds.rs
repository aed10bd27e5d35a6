//! The host kernels compiled for the CPU's vector extension.
//!
//! [`vector_builds!`] defines a function that calls an `#[inline(always)]` body compiled for
//! AVX-512F where the CPU has it, else for AVX2, else for the baseline target. The body and
//! everything it inlines are then vectorised for that extension (a closure dispatch such as
//! `pulp`'s does not carry the features into the closure, which stayed SSE2). Rust fuses no
//! multiply-adds on its own and every build runs the same operations in the same order, so
//! all builds give the same bits.

/// `vector_builds! { fn name(arg: Type, ...) -> Ret = body; }` defines `name`, which runs
/// `body(arg, ...)` compiled for AVX-512F, AVX2 or the baseline, whichever the CPU has first.
/// `body` must be `#[inline(always)]` (so that it is compiled into each build).
macro_rules! vector_builds {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, the only feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, the only feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(super) use vector_builds;

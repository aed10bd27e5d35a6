//! Special functions for the RDP series: `erfc`, `log(erfc)` and binomial coefficients, in
//! double precision and without a maths dependency.
//!
//! Opacus's `_log_erfc(x)` is `log(2) + scipy.special.log_ndtr(-x * sqrt(2))`, which is
//! `log(erfc(x))` computed without underflow for large `x`. Here `erfc` is a port of FreeBSD's
//! `s_erf.c` (as in musl and the `libm` crate), and [`log_erfc`] evaluates the same rational
//! approximations in log space for `1.25 <= x < 28` and the asymptotic series beyond, so it stays
//! finite where `erfc(x)` itself underflows.
//!
//! The coefficients and the method below are from FreeBSD `/usr/src/lib/msun/src/s_erf.c`:
//!
//! ```text
//! ====================================================
//! Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
//!
//! Developed at SunPro, a Sun Microsystems, Inc. business.
//! Permission to use, copy, modify, and distribute this
//! software is freely granted, provided that this notice
//! is preserved.
//! ====================================================
//! ```

const ERX: f64 = 0.8450629115104675;
// erf on [0, 0.84375]
const PP: [f64; 5] = [
    0.12837916709551256,
    -0.3250421072470015,
    -0.02848174957559851,
    -0.005770270296489442,
    -2.3763016656650163e-05,
];
const QQ: [f64; 5] = [
    0.39791722395915535,
    0.0650222499887673,
    0.005081306281875766,
    0.00013249473800432164,
    -3.960228278775368e-06,
];
// erf on [0.84375, 1.25]
const PA: [f64; 7] = [
    -0.0023621185607526594,
    0.41485611868374833,
    -0.3722078760357013,
    0.31834661990116175,
    -0.11089469428239668,
    0.035478304325618236,
    -0.002166375594868791,
];
const QA: [f64; 6] = [
    0.10642088040084423,
    0.540397917702171,
    0.07182865441419627,
    0.12617121980876164,
    0.01363708391202905,
    0.011984499846799107,
];
// erfc on [1.25, 1/0.35]
const RA: [f64; 8] = [
    -0.009864944034847148,
    -0.6938585727071818,
    -10.558626225323291,
    -62.375332450326006,
    -162.39666946257347,
    -184.60509290671104,
    -81.2874355063066,
    -9.814329344169145,
];
const SA: [f64; 8] = [
    19.651271667439257,
    137.65775414351904,
    434.56587747522923,
    645.3872717332679,
    429.00814002756783,
    108.63500554177944,
    6.570249770319282,
    -0.0604244152148581,
];
// erfc on [1/0.35, 28]
const RB: [f64; 7] = [
    -0.0098649429247001,
    -0.799283237680523,
    -17.757954917754752,
    -160.63638485582192,
    -637.5664433683896,
    -1025.0951316110772,
    -483.5191916086514,
];
const SB: [f64; 7] = [
    30.33806074348246,
    325.7925129965739,
    1536.729586084437,
    3199.8582195085955,
    2553.0504064331644,
    474.52854120695537,
    -22.44095244658582,
];

/// Horner evaluation of `c[0] + s * (c[1] + s * (...))`.
fn poly(c: &[f64], s: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &ci| ci + s * acc)
}

/// `1 + s * (c[0] + s * (c[1] + ...))`: the denominators, whose constant term is 1.
fn poly1(c: &[f64], s: f64) -> f64 {
    1.0 + s * poly(c, s)
}

/// For `1.25 <= x < 28`: `(a, b)` with `erfc(x) = exp(a) * exp(b) / x` (FreeBSD's split of
/// `-x^2` into `-z^2 + (z - x)(z + x)`, `z` being `x` with the low 32 bits cleared).
fn erfc_tail_parts(x: f64) -> (f64, f64) {
    let s = 1.0 / (x * x);
    // FreeBSD compares the high word: |x| < 0x4006db6d_00000000 (just below 1/0.35).
    let (r, big_s) = if (x.to_bits() >> 32) < 0x4006_db6d {
        (poly(&RA, s), poly1(&SA, s))
    } else {
        (poly(&RB, s), poly1(&SB, s))
    };
    let z = f64::from_bits(x.to_bits() & 0xffff_ffff_0000_0000);
    (-z * z - 0.5625, (z - x) * (z + x) + r / big_s)
}

/// `erfc(|x|)` for `0.84375 <= |x| < 1.25`.
fn erfc_near_one(ax: f64) -> f64 {
    let s = ax - 1.0;
    1.0 - ERX - poly(&PA, s) / poly1(&QA, s)
}

/// The complementary error function `erfc(x) = 1 - erf(x)`, accurate to about one ulp.
pub(crate) fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax < 0.84375 {
        if ax < f64::EPSILON / 16.0 {
            // |x| < 2^-56
            return 1.0 - x;
        }
        let z = x * x;
        let y = poly(&PP, z) / poly1(&QQ, z);
        return if x < 0.25 {
            1.0 - (x + x * y)
        } else {
            0.5 - (x - 0.5 + x * y)
        };
    }
    let tail = if ax < 1.25 {
        erfc_near_one(ax)
    } else if ax < 28.0 {
        let (a, b) = erfc_tail_parts(ax);
        a.exp() * b.exp() / ax
    } else {
        0.0
    };
    if x < 0.0 { 2.0 - tail } else { tail }
}

/// `log(erfc(x))`, finite for every finite `x` (no underflow for large `x`).
///
/// Matches Opacus's `_log_erfc` (`log(2) + scipy.special.log_ndtr(-x * sqrt(2))`) to a few ulps
/// of `x^2` in absolute terms.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    // scipy: log_ndtr(y) = log1p(-erfc(y / sqrt 2) / 2) for y >= -1, with y = -x sqrt 2; the
    // same operations here keep the tiny values of log(erfc(x)) - log(2) for negative x exact.
    let y = -x * std::f64::consts::SQRT_2;
    if y >= -1.0 {
        let t = y * std::f64::consts::FRAC_1_SQRT_2;
        return std::f64::consts::LN_2 + (-(erfc(t) / 2.0)).ln_1p();
    }
    if x < 1.25 {
        return erfc(x).ln();
    }
    if x < 28.0 {
        let (a, b) = erfc_tail_parts(x);
        return a + b - x.ln();
    }
    if x.is_infinite() {
        return f64::NEG_INFINITY;
    }
    // erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k; for x >= 28 the
    // terms shrink by at least (2k-1)/1568 each, so a handful reach double precision.
    let inv = 1.0 / (2.0 * x * x);
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..20 {
        term *= -f64::from(2 * k - 1) * inv;
        if term.abs() < f64::EPSILON * 1e-3 {
            break;
        }
        sum += term;
    }
    -x * x - x.ln() - 0.5 * std::f64::consts::PI.ln() + sum.ln()
}

/// `binom(n, k)` for integer `n >= 0` (as `f64`), exact up to the final rounding.
///
/// scipy's `special.binom` (which Opacus calls) is exact for `min(k, n - k) < 20` and within a few
/// ulps otherwise; every binomial of the default orders (`n <= 63`) fits in a `u128` here.
pub(crate) fn binom_int(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    let mut acc: u128 = 1;
    for m in 1..=u128::from(k) {
        // acc * (n - k + m) / m is the exact binom(n - k + m, m); checked so that a huge `n`
        // degrades to the floating-point product instead of overflowing.
        match acc.checked_mul(u128::from(n - k) + m) {
            Some(p) => acc = p / m,
            None => return binom_float_product(n as f64, k),
        }
    }
    acc as f64
}

/// scipy's multiplication formula for `binom(n, k)` with integer `k >= 0` (its `kx < 20` branch,
/// operation for operation, so the two agree bit for bit there), used beyond `k = 20` too
/// (where scipy switches to `1 / (n + 1) / beta(1 + n - k, 1 + k)`; both are accurate to a few
/// ulps for the orders' `n <= 63`).
pub(crate) fn binom_float_product(n: f64, k: u64) -> f64 {
    let kx = k as f64;
    let mut num = 1.0f64;
    let mut den = 1.0f64;
    for i in 1..=k {
        num *= i as f64 + n - kx;
        den *= i as f64;
        if num.abs() > 1e50 {
            num /= den;
            den = 1.0;
        }
    }
    num / den
}

#[cfg(test)]
mod tests {
    use super::{binom_float_product, binom_int, erfc, log_erfc};

    #[test]
    fn binomials() {
        assert_eq!(binom_int(63, 31), 9.163120704712952e+17);
        assert_eq!(binom_int(10, 0), 1.0);
        assert_eq!(binom_int(10, 11), 0.0);
        assert_eq!(binom_float_product(10.0, 3), 120.0);
        // binom(2.5, 3) = 2.5 * 1.5 * 0.5 / 6
        assert!((binom_float_product(2.5, 3) - 0.3125).abs() < 1e-16);
    }

    #[test]
    fn erfc_known_values() {
        // Values from mpmath, rounded to f64.
        let cases = [
            (0.0, 1.0),
            (0.5, 0.4795001221869535),
            (1.0, 0.15729920705028513),
            (-1.0, 1.8427007929497148),
            (2.0, 0.004677734981047266),
            (5.0, 1.537459794428035e-12),
            (10.0, 2.088487583762545e-45),
        ];
        for (x, want) in cases {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 4.0 * f64::EPSILON,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn log_erfc_is_continuous_at_the_branch_points() {
        for x in [1.25f64, 28.0] {
            let below = log_erfc(x - 1e-12);
            let above = log_erfc(x);
            assert!(
                (below - above).abs() < 1e-10 * x * x,
                "jump at {x}: {below} vs {above}"
            );
        }
        assert_eq!(log_erfc(f64::INFINITY), f64::NEG_INFINITY);
        assert!((log_erfc(f64::NEG_INFINITY) - 2f64.ln()).abs() < 1e-16);
    }

    /// A float of the fixture: a number or "inf" / "-inf" / "nan".
    fn num(v: &serde_json::Value) -> f64 {
        match v.as_str() {
            Some("inf") => f64::INFINITY,
            Some("-inf") => f64::NEG_INFINITY,
            Some(_) => f64::NAN,
            None => v.as_f64().unwrap_or(f64::NAN),
        }
    }

    #[test]
    fn log_erfc_and_binom_match_scipy() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/privacy/opacus_vectors.json"
        ))
        .expect("fixture");
        for pair in v["log_erfc"].as_array().expect("log_erfc") {
            let (x, want) = (num(&pair[0]), num(&pair[1]));
            let got = log_erfc(x);
            // scipy's log_ndtr rounds x^2 in its exp(-x^2) factor: a few ulps of x^2 absolute.
            let tol = 4.0 * f64::EPSILON * (1.0 + x * x) + 2.0 * f64::EPSILON * want.abs();
            assert!(
                (got - want).abs() <= tol,
                "log_erfc({x}) = {got}, scipy {want}"
            );
        }
        for t in v["binom"].as_array().expect("binom") {
            let (n, k, want) = (num(&t[0]), t[1].as_u64().expect("k"), num(&t[2]));
            let got = if n.fract() == 0.0 {
                binom_int(n as u64, k)
            } else {
                binom_float_product(n, k)
            };
            let exact = n.fract() != 0.0 && k < 20;
            let tol = if exact { 0.0 } else { 1e-13 * want.abs() };
            assert!(
                (got - want).abs() <= tol,
                "binom({n}, {k}) = {got}, scipy {want}"
            );
        }
    }
}

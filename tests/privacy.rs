//! `fedvlm::privacy` against Opacus 1.6.0 itself: the vectors in
//! `tests/fixtures/privacy/opacus_vectors.json` were written by
//! `scripts/generate_privacy_vectors.py` from Opacus's own accountant code (numpy/scipy float64).

use fedvlm::FedError;
use fedvlm::privacy::{
    DEFAULT_ORDERS, RdpAccountant, compute_rdp, noise_multiplier_for, privacy_spent, rdp_at_order,
    try_noise_multiplier_for,
};
use serde_json::Value;

const VECTORS: &str = include_str!("fixtures/privacy/opacus_vectors.json");

/// Relative tolerance for epsilons and RDP values. Measured on the grid: epsilon within 3.5e-11
/// (best orders identical), RDP within 1e-10 except at orders near 1 for small RDP values.
const TOL: f64 = 1e-9;

/// Absolute tolerance added for one step's RDP: Opacus's fractional-order series subtracts in
/// log space as `log(expm1(x - y)) + y`, whose result carries an absolute rounding error of
/// about ulp(|y|) (~4e-15 for terms near exp(-30)); divided by `alpha - 1` this dominates when
/// the RDP itself is tiny (measured worst: 3.6e-14 absolute, 1.5e-9 relative, at q = 0.001,
/// sigma = 0.5, alpha = 1.1, RDP 2.4e-5). Opacus's own values carry the same noise.
const RDP_ABS_TOL_PER_STEP: f64 = 1e-12;

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("fixture is valid JSON")
}

/// A float from the fixture: a JSON number, or "inf" / "-inf" / "nan".
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("finite number"),
        Value::String(s) => match s.as_str() {
            "inf" => f64::INFINITY,
            "-inf" => f64::NEG_INFINITY,
            "nan" => f64::NAN,
            other => panic!("unexpected float string {other}"),
        },
        other => panic!("not a float: {other}"),
    }
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

/// Relative difference, 0 when both are the same infinity or both NaN.
fn rel(got: f64, want: f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    (got - want).abs() / want.abs().max(f64::MIN_POSITIVE)
}

/// `|got - want| <= TOL |want| + abs_tol` (or the same infinity / both NaN).
fn close(got: f64, want: f64, abs_tol: f64) -> bool {
    rel(got, want) == 0.0 || (got - want).abs() <= TOL * want.abs() + abs_tol
}

/// Same order, or both NaN (Opacus's "no privacy" order).
fn same_order(got: f64, want: f64) -> bool {
    got == want || (got.is_nan() && want.is_nan())
}

#[test]
fn default_orders_are_opacus_default_alphas() {
    let v = vectors();
    let want = nums(&v["default_orders"]);
    assert_eq!(want.len(), DEFAULT_ORDERS.len());
    for (got, want) in DEFAULT_ORDERS.iter().zip(&want) {
        assert_eq!(got.to_bits(), want.to_bits(), "{got} vs {want}");
    }
}

#[test]
fn rdp_and_epsilon_match_opacus_on_the_grid() {
    let v = vectors();
    let (mut worst_rdp, mut worst_eps) = (0.0_f64, 0.0_f64);
    let mut cases = 0;
    for g in v["grid"].as_array().expect("grid") {
        let sigma = num(&g["noise_multiplier"]);
        let q = num(&g["sample_rate"]);
        let want = nums(&g["rdp_one_step"]);
        let got = compute_rdp(q, sigma, 1, &DEFAULT_ORDERS);
        for ((&alpha, &got), &want) in DEFAULT_ORDERS.iter().zip(&got).zip(&want) {
            assert!(
                close(got, want, RDP_ABS_TOL_PER_STEP),
                "rdp(q={q}, sigma={sigma}, alpha={alpha}) = {got}, Opacus {want}"
            );
            assert_eq!(rdp_at_order(q, sigma, alpha).to_bits(), got.to_bits());
            worst_rdp = worst_rdp.max((got - want).abs());
        }
        for c in g["cases"].as_array().expect("cases") {
            let steps = c["steps"].as_u64().expect("steps");
            let delta = num(&c["delta"]);
            // The accountant computes `rdp(one step) * steps` per order, so this is its result
            // bit for bit (checked once per grid point below; recomputing it for every case
            // would make this debug-build test slow).
            let rdp: Vec<f64> = got.iter().map(|r| r * steps as f64).collect();
            let (eps, order) = privacy_spent(&DEFAULT_ORDERS, &rdp, delta).expect("same length");
            if steps == 1000 {
                let mut accountant = RdpAccountant::new();
                accountant.step(sigma, q, steps);
                let (a_eps, a_order) = accountant.privacy_spent(delta);
                assert_eq!(
                    (a_eps.to_bits(), a_order.to_bits()),
                    (eps.to_bits(), order.to_bits())
                );
                assert_eq!(accountant.epsilon(delta).to_bits(), eps.to_bits());
            }
            let (want_eps, want_order) = (num(&c["epsilon"]), num(&c["order"]));
            let e = rel(eps, want_eps);
            assert!(
                e < TOL && same_order(order, want_order),
                "sigma={sigma} q={q} steps={steps} delta={delta}: ({eps}, {order}), Opacus \
                 ({want_eps}, {want_order})"
            );
            worst_eps = worst_eps.max(e);
            cases += 1;
        }
    }
    assert_eq!(cases, 6 * 6 * 4 * 2);
    println!("grid: worst absolute difference rdp {worst_rdp:e}, relative epsilon {worst_eps:e}");
}

#[test]
fn multi_phase_histories_match_opacus() {
    let v = vectors();
    for h in v["histories"].as_array().expect("histories") {
        let mut accountant = RdpAccountant::new();
        for p in h["phases"].as_array().expect("phases") {
            let p = nums(p);
            // Opacus calls step() once per step; here half the steps, then the rest.
            let n = p[2] as u64;
            accountant.step(p[0], p[1], n / 2);
            accountant.step(p[0], p[1], n - n / 2);
        }
        let want_history: Vec<Vec<f64>> = h["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(nums)
            .collect();
        let got_history: Vec<Vec<f64>> = accountant
            .history()
            .iter()
            .map(|&(s, q, n)| vec![s, q, n as f64])
            .collect();
        assert_eq!(got_history, want_history);
        assert_eq!(accountant.len(), want_history.len());
        let json = serde_json::to_string(&accountant).expect("serialises");
        let back: RdpAccountant = serde_json::from_str(&json).expect("round trip");
        assert_eq!(back, accountant);

        let total_steps: u64 = accountant.history().iter().map(|p| p.2).sum();
        let abs_tol = RDP_ABS_TOL_PER_STEP * total_steps as f64;
        for (got, want) in accountant.rdp(&DEFAULT_ORDERS).iter().zip(nums(&h["rdp"])) {
            assert!(
                close(*got, want, abs_tol),
                "history rdp {got} vs Opacus {want}"
            );
        }
        for r in h["results"].as_array().expect("results") {
            let delta = num(&r["delta"]);
            let (eps, order) = accountant.privacy_spent(delta);
            let (want_eps, want_order) = (num(&r["epsilon"]), num(&r["order"]));
            assert!(
                rel(eps, want_eps) < TOL && same_order(order, want_order),
                "{got_history:?} delta={delta}: ({eps}, {order}) vs Opacus ({want_eps}, \
                 {want_order})"
            );
            assert!(rel(accountant.epsilon(delta), num(&r["get_epsilon"])) < TOL);
        }
    }
}

#[test]
fn empty_accountant_spent_nothing_like_opacus() {
    let v = vectors();
    let accountant = RdpAccountant::default();
    assert!(accountant.is_empty());
    let (eps, order) = accountant.privacy_spent(1e-5);
    assert_eq!(
        (eps, order),
        (num(&v["empty"]["epsilon"]), num(&v["empty"]["order"]))
    );
    assert_eq!(accountant.epsilon(1e-5), num(&v["empty"]["get_epsilon"]));
    assert_eq!(accountant.epsilon(1e-5), 0.0);
    // Zero steps record nothing.
    let mut accountant = RdpAccountant::new();
    accountant.step(1.0, 0.1, 0);
    assert!(accountant.is_empty());
}

#[test]
fn noise_multiplier_matches_opacus_get_noise_multiplier() {
    let v = vectors();
    for c in v["noise_multiplier"].as_array().expect("noise_multiplier") {
        let eps = num(&c["target_epsilon"]);
        let delta = num(&c["delta"]);
        let q = num(&c["sample_rate"]);
        let steps = c["steps"].as_u64().expect("steps");
        let tol = num(&c["epsilon_tolerance"]);
        let got = noise_multiplier_for(eps, delta, q, steps, tol);
        let checked = try_noise_multiplier_for(eps, delta, q, steps, tol);
        if c.get("error").is_some() {
            assert!(got.is_nan(), "budget too low must give NaN, got {got}");
            assert!(
                matches!(
                    checked,
                    Err(FedError::InvalidConfig {
                        field: "target_epsilon",
                        ..
                    })
                ),
                "{checked:?}"
            );
            continue;
        }
        let want = num(&c["noise_multiplier"]);
        // The bisection visits dyadic values, so the result is exactly Opacus's.
        assert_eq!(
            got, want,
            "eps={eps} delta={delta} q={q} steps={steps} tol={tol}"
        );
        assert_eq!(checked.expect("valid inputs"), want);
        let mut accountant = RdpAccountant::new();
        accountant.step(got, q, steps);
        let at = accountant.epsilon(delta);
        assert!(rel(at, num(&c["epsilon_at_result"])) < TOL);
        assert!(at <= eps && eps - at <= tol);
    }
}

#[test]
fn noise_multiplier_stops_where_opacus_loops_forever() {
    // Sample rate 0: every noise level meets the target; Opacus halves sigma down to 0 forever.
    let sigma = noise_multiplier_for(3.0, 1e-5, 0.0, 100, 0.01);
    assert_eq!(sigma, f64::from_bits(1), "the smallest positive f64");
    // Tolerance 0: the bisection runs until the bracket cannot shrink, then stops.
    // (Sample rate 1, the plain Gaussian, keeps this cheap in a debug build.)
    let sigma = noise_multiplier_for(3.0, 1e-5, 1.0, 10, 0.0);
    let mut accountant = RdpAccountant::new();
    accountant.step(sigma, 1.0, 10);
    let eps = accountant.epsilon(1e-5);
    assert!(eps <= 3.0 && 3.0 - eps < 1e-12, "{sigma} gives {eps}");
}

fn field_of(err: FedError) -> &'static str {
    match err {
        FedError::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn invalid_inputs_give_typed_errors() {
    let mut accountant = RdpAccountant::new();
    for bad in [-0.1, f64::NAN, f64::INFINITY] {
        let err = accountant.try_step(bad, 0.1, 10).expect_err("bad noise");
        assert_eq!(field_of(err), "noise_multiplier");
    }
    for bad in [-0.01, 1.01, f64::NAN] {
        let err = accountant.try_step(1.0, bad, 10).expect_err("bad rate");
        assert_eq!(field_of(err), "sample_rate");
    }
    assert!(accountant.is_empty(), "rejected steps are not recorded");
    accountant.try_step(0.0, 1.0, 1).expect("no noise is valid");
    accountant.try_step(1.0, 0.0, 1).expect("rate 0 is valid");
    for bad in [0.0, 1.0, -1e-5, f64::NAN] {
        let err = accountant.try_epsilon(bad).expect_err("bad delta");
        assert_eq!(field_of(err), "delta");
    }
    assert_eq!(accountant.try_epsilon(1e-5).expect("valid"), f64::INFINITY);

    // A phase recorded unchecked is caught by the checked read-out.
    let mut unchecked = RdpAccountant::new();
    unchecked.step(1.0, 1.5, 3);
    assert_eq!(
        field_of(unchecked.try_privacy_spent(1e-5).expect_err("rate")),
        "sample_rate"
    );
    // Unchecked, Opacus would raise (log of a negative number); here every order's RDP is NaN,
    // which is Opacus's "no privacy" case: (inf, NaN).
    let (eps, order) = unchecked.privacy_spent(1e-5);
    assert!(eps == f64::INFINITY && order.is_nan(), "({eps}, {order})");
    assert!(rdp_at_order(-0.1, 1.0, 2.0).is_nan() && rdp_at_order(f64::NAN, 1.0, 2.5).is_nan());
    assert!(rdp_at_order(0.1, f64::NAN, 2.0).is_nan() && rdp_at_order(0.1, 1.0, f64::NAN).is_nan());
    // delta = 0 gives inf through the formula (log 0 = -inf), as in numpy.
    let mut ok = RdpAccountant::new();
    ok.step(1.0, 0.01, 100);
    assert_eq!(ok.epsilon(0.0), f64::INFINITY);

    let cases: [(f64, f64, f64, u64, f64, &str); 8] = [
        (0.0, 1e-5, 0.01, 100, 0.01, "target_epsilon"),
        (f64::INFINITY, 1e-5, 0.01, 100, 0.01, "target_epsilon"),
        (3.0, 0.0, 0.01, 100, 0.01, "delta"),
        (3.0, 1.0, 0.01, 100, 0.01, "delta"),
        (3.0, 1e-5, 1.5, 100, 0.01, "sample_rate"),
        (3.0, 1e-5, 0.01, 0, 0.01, "steps"),
        (3.0, 1e-5, 0.01, 100, 0.0, "epsilon_tolerance"),
        (3.0, 1e-5, 0.01, 100, f64::NAN, "epsilon_tolerance"),
    ];
    for (eps, delta, q, steps, tol, field) in cases {
        let err = try_noise_multiplier_for(eps, delta, q, steps, tol).expect_err(field);
        assert_eq!(field_of(err), field);
    }

    let err = privacy_spent(&[2.0, 3.0], &[0.1], 1e-5).expect_err("length mismatch");
    assert_eq!(field_of(err), "rdp");
    assert!(
        matches!(privacy_spent(&[], &[], 1e-5), Ok((e, o)) if e == f64::INFINITY && o.is_nan())
    );
}

# Reference vectors for tests/privacy.rs: Opacus 1.6's RDP accountant (RDP of the subsampled
# Gaussian per order, the RDP -> (eps, delta) conversion, the accountant's history merging and
# get_noise_multiplier with accountant "rdp"), written to tests/fixtures/privacy/opacus_vectors.json.
#
# Opacus's package __init__ imports torch; the accountant code itself needs only numpy and scipy.
# So this script loads the real Opacus module files (analysis/rdp.py, accountant.py, rdp.py,
# utils.py) from the installed package without running the package __init__ files, with a stub
# for `opacus.optimizers` (only used for a type annotation) and for `create_accountant`.
#
# Setup:  python3 -m venv /work/venv-privacy
#         /work/venv-privacy/bin/pip install --no-deps opacus==1.6.0 && /work/venv-privacy/bin/pip install numpy scipy
# Run:    /work/venv-privacy/bin/python scripts/generate_privacy_vectors.py
#
# Non-finite floats are written as the strings "inf", "-inf", "nan" (JSON has no such numbers);
# finite floats are written with Python's repr, which round-trips exactly.
import importlib
import importlib.metadata
import importlib.util
import json
import math
import pathlib
import platform
import sys
import types
import warnings

import numpy as np
import scipy
from scipy import special


def load_opacus_accounting():
    spec = importlib.util.find_spec("opacus")  # finds the package without importing it
    root = pathlib.Path(spec.submodule_search_locations[0])
    for name, path in [
        ("opacus", root),
        ("opacus.accountants", root / "accountants"),
        ("opacus.accountants.analysis", root / "accountants" / "analysis"),
    ]:
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(path)]
        sys.modules[name] = pkg
    optimizers = types.ModuleType("opacus.optimizers")
    optimizers.DPOptimizer = object
    sys.modules["opacus.optimizers"] = optimizers
    analysis = importlib.import_module("opacus.accountants.analysis.rdp")
    accountant_mod = importlib.import_module("opacus.accountants.rdp")
    rdp_accountant = accountant_mod.RDPAccountant

    def create_accountant(mechanism):
        assert mechanism == "rdp", mechanism
        return rdp_accountant()

    sys.modules["opacus.accountants"].create_accountant = create_accountant
    utils = importlib.import_module("opacus.accountants.utils")
    return analysis, rdp_accountant, utils.get_noise_multiplier, root


analysis, RDPAccountant, get_noise_multiplier, OPACUS_ROOT = load_opacus_accounting()
warnings.simplefilter("ignore")  # "Optimal order is the smallest/largest alpha" warnings


def f(x):
    """A float for JSON: repr-exact when finite, a string otherwise."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


ORDERS = RDPAccountant.DEFAULT_ALPHAS
NOISES = [0.5, 0.8, 1.0, 1.1, 2.0, 5.0]
RATES = [0.0, 0.001, 0.01, 0.1, 0.5, 1.0]
STEPS = [1, 10, 1000, 100000]
DELTAS = [1e-5, 1e-3]

out = {
    "generator": "scripts/generate_privacy_vectors.py",
    "versions": {
        "opacus": importlib.metadata.version("opacus"),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    },
    "default_orders": [f(a) for a in ORDERS],
}

# 1. Single-step RDP per order for every (noise, rate); epsilon for every (steps, delta).
grid = []
for sigma in NOISES:
    for q in RATES:
        rdp1 = analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=ORDERS)
        cases = []
        for steps in STEPS:
            rdp = analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=ORDERS)
            for delta in DELTAS:
                acc = RDPAccountant()
                acc.history = [(sigma, q, steps)]
                eps, order = acc.get_privacy_spent(delta=delta)
                eps2, order2 = analysis.get_privacy_spent(orders=ORDERS, rdp=rdp, delta=delta)
                assert (eps == eps2 or (math.isinf(eps) and math.isinf(eps2))), (eps, eps2)
                cases.append({"steps": steps, "delta": delta, "epsilon": f(eps), "order": f(order)})
        grid.append({"noise_multiplier": sigma, "sample_rate": q,
                     "rdp_one_step": [f(r) for r in rdp1], "cases": cases})
out["grid"] = grid

# 2. Multi-stage histories built with the accountant's own step() (one call per step), to pin the
# merging of consecutive identical (noise, rate) entries.
histories = []
for phases in [
    [(1.1, 0.01, 500), (0.8, 0.004, 300)],
    [(1.1, 0.01, 500), (0.8, 0.004, 300), (1.1, 0.01, 200)],
    [(2.0, 0.05, 120), (2.0, 0.05, 80), (0.7, 0.2, 30)],
    [(1.0, 0.0, 10), (1.0, 0.02, 40)],
    [(1.0, 0.02, 40), (0.0, 0.02, 1)],
]:
    acc = RDPAccountant()
    for sigma, q, n in phases:
        for _ in range(n):
            acc.step(noise_multiplier=sigma, sample_rate=q)
    rdp = sum(analysis.compute_rdp(q=q, noise_multiplier=s, steps=n, orders=ORDERS)
              for (s, q, n) in acc.history)
    results = []
    for delta in DELTAS:
        eps, order = acc.get_privacy_spent(delta=delta)
        results.append({"delta": delta, "epsilon": f(eps), "order": f(order),
                        "get_epsilon": f(acc.get_epsilon(delta=delta))})
    histories.append({"phases": [list(p) for p in phases],
                      "history": [[s, q, n] for (s, q, n) in acc.history],
                      "rdp": [f(r) for r in np.atleast_1d(rdp)], "results": results})
out["histories"] = histories

# 3. Edge cases of the accountant.
empty = RDPAccountant()
eps, order = empty.get_privacy_spent(delta=1e-5)
out["empty"] = {"epsilon": f(eps), "order": f(order), "get_epsilon": f(empty.get_epsilon(delta=1e-5))}

# 4. get_noise_multiplier (accountant "rdp", steps given).
noise = []
for eps_t, q, steps, tol in [
    (1.0, 0.01, 1000, 0.01), (3.0, 0.01, 1000, 0.01), (8.0, 0.01, 1000, 0.01),
    (1.0, 0.004, 10000, 0.01), (3.0, 0.004, 10000, 0.01), (8.0, 0.004, 10000, 0.01),
    (3.0, 0.1, 500, 0.001), (8.0, 1.0, 10, 0.01), (1.0, 0.001, 100000, 0.05),
]:
    # Not here: sample_rate 0 (or steps 0) with a reachable target. Opacus's bisection then halves
    # sigma_high down to 0.0 and loops forever (every sigma meets the target); the Rust port stops
    # when the midpoint equals an end of the bracket.
    case = {"target_epsilon": eps_t, "delta": 1e-5, "sample_rate": q, "steps": steps,
            "epsilon_tolerance": tol}
    try:
        sigma = get_noise_multiplier(target_epsilon=eps_t, target_delta=1e-5, sample_rate=q,
                                     steps=steps, accountant="rdp", epsilon_tolerance=tol)
        acc = RDPAccountant()
        acc.history = [(sigma, q, steps)]
        case.update({"noise_multiplier": f(sigma), "epsilon_at_result": f(acc.get_epsilon(delta=1e-5))})
    except ValueError as e:
        case["error"] = str(e)
    noise.append(case)
    print("noise multiplier", case, flush=True)
for eps_t, q, steps in [(0.01, 1.0, 100000)]:
    try:
        get_noise_multiplier(target_epsilon=eps_t, target_delta=1e-5, sample_rate=q, steps=steps)
        raise SystemExit("expected 'The privacy budget is too low.'")
    except ValueError as e:
        noise.append({"target_epsilon": eps_t, "delta": 1e-5, "sample_rate": q, "steps": steps,
                      "epsilon_tolerance": 0.01, "error": str(e)})
out["noise_multiplier"] = noise

# 5. Opacus's _log_erfc (math.log(2) + scipy.special.log_ndtr(-x * sqrt 2)) at a few points, for
# the Rust log-erfc unit test.
xs = [-30.0, -8.0, -3.0, -1.0, -0.5, -1e-3, 0.0, 1e-9, 0.2, 0.5, 0.7, 0.7071, 0.75, 0.84375, 1.0,
      1.25, 2.0, 2.857, 3.0, 5.0, 6.0, 10.0, 20.0, 26.0, 27.9, 28.0, 30.0, 50.0, 100.0, 1e3, 1e5]
out["log_erfc"] = [[x, f(analysis._log_erfc(x))] for x in xs]
# scipy's binom for the orders' fractional branch (a few (alpha, i) pairs).
out["binom"] = [[a, i, f(special.binom(a, i))] for a in [1.1, 2.5, 10.9, 63.0]
                for i in [0, 1, 2, 5, 11, 19, 20, 25, 40]]

path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/privacy/opacus_vectors.json"
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path} ({path.stat().st_size} bytes) from opacus at {OPACUS_ROOT}")

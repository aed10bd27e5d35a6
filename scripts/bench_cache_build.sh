#!/usr/bin/env bash
# Times the CIFAR-10 frozen-prefix cache build, fedvlm against PyTorch, side by side in one run
# on one machine: MobileNetV3-small, batch 256, 64 px, eval / no grad, the same thread count.
# Alternates the two programs for ROUNDS rounds (so both see the same machine load) and prints
# each round's ms per image, then the median and the best of each and their ratios.
#
#   scripts/bench_cache_build.sh [ROUNDS=5] [THREADS=2]
#
# Needs a Python with torch and torchvision (PYTHON, default `python3`; for example
# PYTHON=/path/to/venv/bin/python) and builds the example in release mode
# (CARGO_TARGET_DIR is honoured). Extra flags for both programs: EXTRA="--size 32"; for torch
# only: TORCH_EXTRA="--channels-last".
set -euo pipefail
ROUNDS=${1:-5}
THREADS=${2:-2}
PYTHON=${PYTHON:-python3}
EXTRA=${EXTRA:-}
TORCH_EXTRA=${TORCH_EXTRA:-}
# On a shared machine torch's spinning OpenMP threads collapse when a core is taken (2-thread
# runs 5-20x slower); passive waiting keeps its timing meaningful. Set OMP_WAIT_POLICY=ACTIVE
# for OpenMP's default on a quiet machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example cifar_cache_timing
BIN="${CARGO_TARGET_DIR:-target}/release/examples/cifar_cache_timing"
fed=() torch=()
for round in $(seq 1 "$ROUNDS"); do
    # shellcheck disable=SC2086
    f=$("$BIN" --threads "$THREADS" $EXTRA | sed -n 's/^fedvlm_ms_per_image=//p')
    # shellcheck disable=SC2086
    t=$(OMP_NUM_THREADS="$THREADS" "$PYTHON" scripts/time_cifar_cache_build.py --threads "$THREADS" $EXTRA $TORCH_EXTRA \
        | sed -n 's/^torch_ms_per_image=//p')
    echo "round $round: fedvlm $f ms/image, torch $t ms/image"
    fed+=("$f") torch+=("$t")
done
"$PYTHON" - "${fed[*]}" "${torch[*]}" <<'PY'
import statistics, sys
fed = [float(v) for v in sys.argv[1].split()]
torch = [float(v) for v in sys.argv[2].split()]
mf, mt = statistics.median(fed), statistics.median(torch)
bf, bt = min(fed), min(torch)
print(f"median: fedvlm {mf:.4f} ms/image, torch {mt:.4f} ms/image, ratio {mf / mt:.2f}x")
print(f"best:   fedvlm {bf:.4f} ms/image, torch {bt:.4f} ms/image, ratio {bf / bt:.2f}x")
PY

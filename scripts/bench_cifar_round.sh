#!/usr/bin/env bash
# fedvlm's cached CIFAR-10 round (sequential and cohort-batched) and PyTorch's, side by side on
# this machine, in one run. Usage:
#   scripts/bench_cifar_round.sh [clients, default 10,40,160] [cohort settings, default off,1,5,10,20,40,auto]
# PYTHON (default: python3) must have torch; CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS="${1:-10,40,160}"
COHORTS="${2:-off,1,5,10,20,40,auto}"
PYTHON="${PYTHON:-python3}"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -m), load: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo build --release --example time_cifar_round -q
BIN="${CARGO_TARGET_DIR:-target}/release/examples/time_cifar_round"
echo "# fedvlm (burn Flex, release)"
"$BIN" --clients "$CLIENTS" --cohort "$COHORTS"
echo "# PyTorch"
"$PYTHON" scripts/time_cifar_cached_step.py --clients "$CLIENTS"

#!/usr/bin/env bash
# The GPU check: everything fedvlm asks of one NVIDIA GPU, in one script that finishes in
# under 8 minutes on an H200 with nothing but the working tree (no network, no pip).
#
#   scripts/gpu_check.sh                 # on the GPU machine, from the repository root
#   scripts/gpu_check.sh --prepare       # on a build machine: prebuilt binaries into .gpu-bin/
#   scripts/gpu_check.sh --dry-run       # on any machine: the same steps on the CPU (Flex),
#                                        # small sizes, to check the script itself
#
# Steps (each bounded by `timeout`, each logged under $OUT):
#   1. build with `--features cuda` (when cargo is there and can build offline), else use
#      the binaries `--prepare` left in $FEDVLM_GPU_BIN (default .gpu-bin/; a GPU machine
#      without a Rust toolchain gets them carried with the working tree);
#   2. the backend-generic parity tests (tests/backend_parity.rs) on CUDA with
#      FEDVLM_TEST_CUDA=1: MobileNetV3 against torchvision, Florence-2 tiny against
#      transformers (f32, f16 and bf16 with the tolerances the test states), LoRA and payload
#      invariants, a quickstart federation against Flex;
#   3. the quickstart example on CUDA;
#   4. examples/device_timings at Florence-2-base size on random weights: forward, uncached
#      pLoRA step, cached step, cache build at batch 16;
#   5. examples/time_cifar_round: a cohort-batched 40-client CIFAR-10 round against
#      sequential clients;
#   6. the report: $OUT/report.md (and report.json) with each step's status, seconds and peak
#      GPU memory (nvidia-smi sampled every 200 ms while the step runs).
#
# $OUT defaults to target/gpu-check. The script exits non-zero when any step failed; the
# report is written either way.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-target/gpu-check}"
BIN="${FEDVLM_GPU_BIN:-$ROOT/.gpu-bin}"
MODE="gpu"
case "${1:-}" in
  --prepare) MODE="prepare" ;;
  --dry-run) MODE="dry" ;;
  "") ;;
  *) echo "usage: scripts/gpu_check.sh [--prepare | --dry-run]" >&2; exit 2 ;;
esac

# The binaries the check runs: name, then the cargo selector that builds it.
EXAMPLES=(quickstart device_timings time_cifar_round)
TESTS=(backend_parity)

# Builds the check's binaries (release; with the cuda feature unless --dry-run) and prints
# nothing but errors; copies them into "$1" under their plain names.
build_into() {
  local dest="$1" features=()
  [ "$MODE" = dry ] || features=(--features cuda)
  mkdir -p "$dest"
  local selectors=()
  for e in "${EXAMPLES[@]}"; do selectors+=(--example "$e"); done
  for t in "${TESTS[@]}"; do selectors+=(--test "$t"); done
  cargo build --release "${features[@]}" "${selectors[@]}" --message-format=json \
    >"$dest/artifacts.json" 2>"$dest/build.log" || { tail -30 "$dest/build.log" >&2; return 1; }
  # The executables cargo reported, matched to their targets' names.
  python3 - "$dest" <<'PY' || return 1
import json, shutil, sys, os
dest = sys.argv[1]
for line in open(os.path.join(dest, "artifacts.json")):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    exe = msg.get("executable")
    if msg.get("reason") == "compiler-artifact" and exe:
        shutil.copy2(exe, os.path.join(dest, msg["target"]["name"]))
PY
  for name in "${EXAMPLES[@]}" "${TESTS[@]}"; do
    [ -x "$dest/$name" ] || { echo "build made no $name" >&2; return 1; }
  done
}

if [ "$MODE" = prepare ]; then
  echo "building the GPU check's binaries (release, --features cuda) into $BIN"
  build_into "$BIN" || exit 1
  for name in "${EXAMPLES[@]}" "${TESTS[@]}"; do
    strip "$BIN/$name" 2>/dev/null || true
  done
  du -ch "$BIN"/* | tail -1
  echo "carry .gpu-bin (ignored by git) to the GPU machine; there run scripts/gpu_check.sh"
  exit 0
fi

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
REPORT_ROWS="$OUT/steps.tsv"
: >"$REPORT_ROWS"
FAILED=0
SAMPLER_PID=""

stop_sampler() {
  if [ -n "$SAMPLER_PID" ]; then
    kill "$SAMPLER_PID" 2>/dev/null
    wait "$SAMPLER_PID" 2>/dev/null
    SAMPLER_PID=""
  fi
}
trap stop_sampler EXIT

have_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# Runs one step: `step NAME SECONDS COMMAND...`, output to $OUT/NAME.log, GPU memory sampled
# into $OUT/NAME.mem; one row of steps.tsv: name, status, seconds, peak MiB.
step() {
  local name="$1" limit="$2"
  shift 2
  echo "== $name (at most ${limit}s)"
  if have_gpu; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 \
      >"$OUT/$name.mem" 2>/dev/null &
    SAMPLER_PID=$!
  fi
  local started status
  started=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  status=$?
  local seconds peak="-"
  seconds=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
    "$started" "$(date +%s.%N)")
  stop_sampler
  if [ -s "$OUT/$name.mem" ]; then
    peak=$(sort -n "$OUT/$name.mem" | tail -1 | tr -d ' ')
  fi
  local verdict="ok"
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    verdict="timed out"
    FAILED=1
  elif [ "$status" -ne 0 ]; then
    verdict="failed ($status)"
    FAILED=1
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$verdict" "$seconds" "$peak" >>"$REPORT_ROWS"
  echo "   $verdict in ${seconds}s, peak GPU memory ${peak} MiB"
  tail -5 "$OUT/$name.log" | sed 's/^/   | /'
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "mode: $MODE"
  if have_gpu; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  else
    echo "gpu: none found (nvidia-smi)"
  fi
  nproc | sed 's/^/cpu cores: /'
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

# Builds into $OUT/bin and records the build's row.
build_step() {
  echo "== build"
  BIN="$OUT/bin"
  local started verdict="ok"
  started=$(date +%s)
  build_into "$BIN" >"$OUT/build.log" 2>&1 || { verdict="failed"; FAILED=1; tail -20 "$OUT/build.log"; }
  printf 'build\t%s\t%s\t-\n' "$verdict" "$(($(date +%s) - started))" >>"$REPORT_ROWS"
  echo "   $verdict"
}

# 1. The binaries.
if [ "$MODE" = dry ]; then
  build_step
elif command -v cargo >/dev/null 2>&1 && cargo fetch --offline >/dev/null 2>&1; then
  build_step
elif [ -x "$BIN/backend_parity" ]; then
  echo "no offline cargo build here: using the prebuilt binaries in $BIN"
  printf 'build\tprebuilt (%s)\t0\t-\n' "$BIN" >>"$REPORT_ROWS"
else
  echo "no cargo that builds offline and no prebuilt binaries in $BIN:" \
    "run scripts/gpu_check.sh --prepare on a build machine and carry .gpu-bin" >&2
  printf 'build\tfailed (no cargo, no %s)\t0\t-\n' "$BIN" >>"$REPORT_ROWS"
  FAILED=1
fi

if [ -x "$BIN/backend_parity" ]; then
  export FEDVLM_REPO_ROOT="$ROOT"
  if [ "$MODE" = dry ]; then
    # Flex: the same tests CI runs.
    step parity 900 "$BIN/backend_parity" --test-threads=1
    step quickstart 600 "$BIN/quickstart"
    step device_timings 900 "$BIN/device_timings" --out "$OUT" --image 192 --batch 1 \
      --cache-batch 2 --repeat 1
    step cohort_round 900 "$BIN/time_cifar_round" --clients 10 --cohort off,auto \
      --rounds 1 --sequential-rounds 1 --images 500
  else
    export FEDVLM_TEST_CUDA=1
    step parity 180 "$BIN/backend_parity" --test-threads=1
    step quickstart 90 "$BIN/quickstart"
    step device_timings 150 "$BIN/device_timings" --out "$OUT" --cache-batch 16
    step cohort_round 120 "$BIN/time_cifar_round" --clients 40 --cohort off,auto \
      --rounds 2 --sequential-rounds 1
  fi
fi

# 6. The report.
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
with open(os.path.join(out, "steps.tsv")) as f:
    for line in f:
        name, status, seconds, peak = line.rstrip("\n").split("\t")
        rows.append({"step": name, "status": status, "seconds": float(seconds),
                     "peak_gpu_mib": None if peak == "-" else int(float(peak))})
timings = None
path = os.path.join(out, "timings.json")
if os.path.exists(path):
    with open(path) as f:
        timings = json.load(f)
cohort = []
path = os.path.join(out, "cohort_round.log")
if os.path.exists(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    cohort.append(json.loads(line))
                except ValueError:
                    pass
with open(os.path.join(out, "machine.txt")) as f:
    machine = f.read().strip()
report = {"machine": machine, "steps": rows, "device_timings": timings, "cohort_round": cohort}
with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
lines = ["# fedvlm GPU check", "", "```", machine, "```", "",
         "| step | status | seconds | peak GPU memory (MiB) |", "|---|---|---|---|"]
for r in rows:
    peak = "-" if r["peak_gpu_mib"] is None else str(r["peak_gpu_mib"])
    lines.append(f"| {r['step']} | {r['status']} | {r['seconds']:.1f} | {peak} |")
if timings:
    lines += ["", "## Florence-2-base timings (random weights)", "", "```",
              json.dumps(timings, indent=2), "```"]
if cohort:
    lines += ["", "## CIFAR-10 round, cohort-batched against sequential", "", "```"]
    lines += [json.dumps(c) for c in cohort]
    lines += ["```"]
with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

exit "$FAILED"

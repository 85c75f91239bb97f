#!/usr/bin/env bash
# The GPU evidence in one prepared command (docs/performance.md, "GPU evidence").
#
# Run from the repository root on a machine with one CUDA GPU and its own torch:
#   tools/gpu_evidence.sh --wheels .whl --out "$OUT"
#   tools/gpu_evidence.sh --cpu-dry-run --wheels /tmp/whl --out /tmp/gpu-dry   # the same steps on a CPU, --quick
#
# 1. install: the pure-Python dependencies from the wheel folder and flexcore itself
#    (pip --no-deps --no-build-isolation) into a private folder put first on PYTHONPATH,
#    so the machine's torch is used and nothing of it is replaced;
# 2. gpu:       tools/benchmark.py gpu (host syncs per step, step times, device parity);
# 3. tests:     pytest -m gpu and the layer/model parity tests;
# 4. calibrate: tools/benchmark.py fft-calibrate on every 4th case of the grid (not saved);
# 5. layers:    tools/benchmark.py layers (the spatial-vs-FFT sweep that 'auto' is judged on).
# Each step has its own time limit, and all together end within --total seconds; a step that
# fails or runs out of time is reported and the next one still runs. Results (at most 8 files,
# as a device machine returns): gpu.json gpu.md fft-calibrate.json layers.json log.txt summary.txt.
# Build the wheel folder on a machine with a package index:
#   python3 -m pip wheel --no-deps gin-config fvcore iopath yacs termcolor submitit tabulate -w .whl
set -u -o pipefail

WHEELS=${FLEXCORE_WHEELS:-.whl}
OUT_DIR=${OUT:-output/gpu_evidence}
STEPS="install gpu tests calibrate layers"
TOTAL=480  # seconds: with a machine start, one call of at most 10 minutes; time left for a retry
DEVICE=cuda
DRY=0
PY=${PYTHON:-python3}

usage() { sed -n '2,18p' "$0"; echo "options: --wheels DIR --out DIR --steps 'install gpu ...' --total SECONDS --cpu-dry-run --python EXE"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$2; shift 2 ;;
    --out) OUT_DIR=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --total) TOTAL=$2; shift 2 ;;
    --python) PY=$2; shift 2 ;;
    --cpu-dry-run) DRY=1; DEVICE=cpu; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_evidence.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if [ ! -f setup.py ] || [ ! -f tools/benchmark.py ]; then
  echo "gpu_evidence.sh: run it from the flexcore repository root (no setup.py / tools/benchmark.py here)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR=$(cd "$OUT_DIR" && pwd)
LOG=$OUT_DIR/log.txt
SUMMARY=$OUT_DIR/summary.txt
if [ -n "${FLEXCORE_SITE:-}" ]; then
  SITE=$FLEXCORE_SITE
else
  SITE=$(mktemp -d /tmp/flexcore-site.XXXXXX) || exit 2
  trap 'rm -rf "$SITE"' EXIT  # a folder of our own: gone with the run
fi
: >"$LOG"
: >"$SUMMARY"
export PYTHONUNBUFFERED=1
# The installed copy cannot find the checkout's seed fixtures on its own.
export FLEXCORE_SEED_FIXTURES=${FLEXCORE_SEED_FIXTURES:-$PWD/tests/fixtures/seed}

# Per-step limits (seconds), cut to what is left of --total.
declare -A LIMIT=([install]=120 [gpu]=300 [tests]=150 [calibrate]=150 [layers]=120)
# Extra arguments per step (plain words: they are split where used).
QUICK=""
GPU_EXTRA="--budget 20"
CAL_EXTRA="--every 4 --repeat 4 --min-sample 0.02 --cap 1.0"
LAYERS_EXTRA="--repeat 3 --min-sample 0.05 --budget 10"
if [ "$DRY" = 1 ]; then
  QUICK="--quick --repeat 1 --warmup 0 --min-sample 0"
  GPU_EXTRA="--skip-compile"
  CAL_EXTRA="--every 2"
  LAYERS_EXTRA="--skip-direct33"
fi

step_install() {
  local wheels=("$WHEELS"/*.whl)
  if [ ! -e "${wheels[0]}" ]; then
    echo "no wheels in '$WHEELS': build them (see the top of tools/gpu_evidence.sh) and carry the folder" >&2
    return 1
  fi
  local leftovers=()  # what the in-tree build adds, removed after it
  [ -e build ] || leftovers+=(build)
  [ -e flexcore.egg-info ] || leftovers+=(flexcore.egg-info)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${wheels[@]}" &&
    "$PY" -m pip install -q --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" . &&
    rm -rf "${leftovers[@]}"
}

step_gpu() {
  "$PY" tools/benchmark.py gpu --device "$DEVICE" $QUICK $GPU_EXTRA \
    --json "$OUT_DIR/gpu.json" --markdown "$OUT_DIR/gpu.md"
}

# pytest on the installed copy: the checkout's own flexcore/ lacks flexcore.registry (setup.py maps
# registry/ there), so neither the working directory nor the test folders may come first on sys.path.
run_pytest() {
  "$PY" -c 'import os, sys
sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
import pytest
sys.exit(pytest.main(sys.argv[1:]))' -x -q -p no:cacheprovider --import-mode=append "$@"
}

step_tests() {
  # Only the files with gpu tests: with --import-mode=append two folders' conftest.py cannot both load.
  local gpu_files
  gpu_files=$(grep -rlE "mark\.gpu" tests projects --include='test_*.py' | sort)
  run_pytest -m gpu $gpu_files
  local rc=$?
  run_pytest tests/layers/test_conv_original_parity.py tests/layers/kernels/test_kernel_original_parity.py \
    tests/modeling/backbones/test_original_parity.py || rc=$?
  return $rc
}

step_calibrate() {
  "$PY" tools/benchmark.py fft-calibrate --device "$DEVICE" --no-save $QUICK $CAL_EXTRA \
    --json "$OUT_DIR/fft-calibrate.json"
}

step_layers() {
  "$PY" tools/benchmark.py layers --device "$DEVICE" $QUICK $LAYERS_EXTRA --json "$OUT_DIR/layers.json"
}

{
  echo "# gpu_evidence.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), device $DEVICE, steps: $STEPS"
  command -v nvidia-smi >/dev/null && nvidia-smi -L
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} 2>&1 | tee -a "$LOG"

export PY DEVICE WHEELS SITE OUT_DIR QUICK GPU_EXTRA CAL_EXTRA LAYERS_EXTRA
export -f run_pytest step_install step_gpu step_tests step_calibrate step_layers
FAILED=0
ON_PATH=0
START=$SECONDS
for step in $STEPS; do
  if ! declare -F "step_$step" >/dev/null; then
    echo "gpu_evidence.sh: unknown step '$step' (install gpu tests calibrate layers)" | tee -a "$LOG" >&2
    FAILED=1
    continue
  fi
  left=$((TOTAL - (SECONDS - START)))
  limit=${LIMIT[$step]}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 10 ]; then
    echo "$step: SKIPPED (--total $TOTAL s spent)" | tee -a "$SUMMARY" "$LOG"
    FAILED=1
    continue
  fi
  echo "## $step (limit ${limit} s)" | tee -a "$LOG"
  begin=$SECONDS
  if [ "$ON_PATH" = 0 ] && [ -e "$SITE/flexcore" ]; then  # the installed copy first, once installed
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    ON_PATH=1
  fi
  timeout --kill-after=10 "$limit" bash -c "step_$step" 2>&1 | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  took=$((SECONDS - begin))
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT after ${limit} s" ; FAILED=1 ;;
    *) status="FAILED (exit $rc)" ; FAILED=1 ;;
  esac
  echo "$step: $status, ${took} s" | tee -a "$SUMMARY" "$LOG"
done
[ -e "$SITE/flexcore" ] && echo "flexcore ran from an install of this checkout in $SITE" >>"$SUMMARY"
if [ -f "$OUT_DIR/gpu.md" ]; then
  grep -E '^\[(PASS|MISS)\]' "$OUT_DIR/gpu.md" >>"$SUMMARY"
fi
echo "== summary ($OUT_DIR) =="
cat "$SUMMARY"
exit $FAILED

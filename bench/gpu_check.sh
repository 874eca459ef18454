#!/usr/bin/env bash
# The check on a machine with a CUDA GPU, in two steps of one command each, well under 8 minutes
# each on an H100/H200. Each step writes what it learns into OUT as it goes, so a step that is
# stopped leaves its logs and measurements behind:
#
#   bash bench/gpu_check.sh test OUT [--device cpu] [--quick]
#       records the environment (environment.txt); checks up front every import the step needs
#       (pytest, PIL, torchvision, matplotlib, setuptools, ninja, and triton on a GPU); installs the
#       package with SPATIALSTATS_REQUIRE_EXTENSION=1, so that a failed CUDA build fails the step
#       (install.log); checks that the backends the device needs are available; runs the test
#       files with CUDA cases but their CPU cases (pytest.log, junit.xml) within the step's time.
#   bash bench/gpu_check.sh sweep OUT [--device cpu] [--quick] [--budget-s SECONDS] [--compile]
#       bench/sweep.py (sweep.csv, rows appended as measured; sweep.log), rerun in a fresh process
#       when a CUDA error leaves the context unusable (it continues after the failed case), stopped
#       by its time budget (default 300 s); then bench/plot.py from whatever was measured
#       (sweep.png, summary.md with the fitted cost model).
#
# The exit status is the step's: 0 when everything passed; 2 a missing import; 3 a failed install;
# 4 a backend the device needs is unavailable; else pytest's (test), or the sweep's when it did not
# finish cleanly (the plot is drawn all the same), else the plot's (sweep).
# `--device cpu --quick` runs a step end to end without a GPU (tests/test_gpu_check.py). PYTHON
# names the interpreter (default python3). Install: `python3 -m pip install --no-deps
# --no-build-isolation -e .` (the GPU machine has no network), with TORCH_CUDA_ARCH_LIST (default
# 9.0) and MAX_JOBS (default: the number of cores).
set -uo pipefail
usage="usage: bash bench/gpu_check.sh test|sweep OUT [--device cuda|cpu] [--quick] [--budget-s S] [--compile]"
step_name=${1:-}
[ "$step_name" = test ] || [ "$step_name" = sweep ] || { echo "$usage" >&2; exit 64; }
[ -n "${2:-}" ] || { echo "$usage" >&2; exit 64; }
OUT=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
device=cuda quick=() budget_s=300 compile=()
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --quick) quick=(--quick); shift ;;
        --budget-s) budget_s=$2; shift 2 ;;
        --compile) compile=(--compile); shift ;;
        *) echo "unknown option $1; $usage" >&2; exit 64 ;;
    esac
done
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
started=$SECONDS
say() { echo "== $* ($((SECONDS - started)) s)"; }
STEP_SECONDS=450  # each step stays under 7.5 minutes

environment() {
    {
        date -u +"%Y-%m-%d %H:%M:%S UTC"
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        else
            echo "nvidia-smi: not found"
        fi
        "$PYTHON" - <<'EOF'
import sys

print("python", sys.version.split()[0])
import torch

gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
print("torch", torch.__version__, "| CUDA (torch)", torch.version.cuda, "| GPU", gpu)
try:
    import triton

    print("triton", triton.__version__)
except ImportError as error:
    print("triton: not importable:", error)
EOF
        if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; else echo "nvcc: not on PATH (CUDA_HOME=${CUDA_HOME:-unset})"; fi
    } 2>&1 | tee -a "$OUT/environment.txt"
}

check_imports() {
    local modules="pytest PIL torchvision matplotlib setuptools ninja numpy torch"
    [ "$device" = cuda ] && modules="$modules triton"
    "$PYTHON" - $modules <<'EOF'
import importlib.util
import sys

missing = [name for name in sys.argv[1:] if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"missing imports: {', '.join(missing)}; install them before this step (there is no network)")
print("imports:", ", ".join(sys.argv[1:]), "found")
EOF
}

install() {
    # The CUDA part of spatialstats._C needs nvcc: CUDA_HOME, else nvcc on PATH, else a pip cuda-toolkit.
    if [ "$device" = cuda ] && [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null; then
        CUDA_HOME=$("$PYTHON" -c 'import nvidia.cu13 as kit; print(list(kit.__path__)[0])' 2>/dev/null) && export CUDA_HOME
    fi
    local skip_cuda=0
    [ "$device" = cuda ] || skip_cuda=1
    SPATIALSTATS_REQUIRE_EXTENSION=1 SPATIALSTATS_SKIP_CUDA_BUILD=$skip_cuda \
        TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PYTHON" -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
    local status=$?
    if [ $status -ne 0 ]; then
        tail -n 30 "$OUT/install.log"
        echo "install failed (exit status $status; install.log)"
    fi
    return $status
}

check_backends() {
    "$PYTHON" - "$device" <<'EOF' 2>&1 | tee -a "$OUT/environment.txt"
import sys

import spatialstats

device = sys.argv[1]
needed = ("fft", "native", "triton", "conv") if device == "cuda" else ("fft", "native", "conv")
reasons = spatialstats.available_backends(device)
print(f"backends on {device}:", {name: reason or "available" for name, reason in reasons.items()})
missing = {name: reasons.get(name, "not a backend") for name in needed if reasons.get(name, "not a backend")}
if missing:
    sys.exit(f"backends needed on {device} are unavailable: {missing}")
EOF
}

run_tests() {
    # The test files with CUDA cases, but their CPU cases (they run in CI); --quick: a few fast tests
    # and the files that hold them, to run the step on a CPU.
    local files selection=(-k "not cpu")
    files=$(grep -l cuda tests/test_*.py | tr '\n' ' ')
    if [ ${#quick[@]} -gt 0 ]; then
        selection=(-k "multiphase_pairs or bad_input_raises_from_cpp")
        files=$(grep -l -E "def test_(multiphase_pairs|bad_input_raises_from_cpp)" $files | tr '\n' ' ')
    fi
    local seconds=$((STEP_SECONDS - (SECONDS - started)))
    say "pytest ${files}${selection[*]} (at most $seconds s)"
    timeout "$seconds" "$PYTHON" -m pytest -v -p no:cacheprovider --junitxml "$OUT/junit.xml" $files "${selection[@]}" \
        2>&1 | tee "$OUT/pytest.log"
    return "${PIPESTATUS[0]}"
}

run_sweep() {
    local status=0 restarts=0 left
    while :; do
        left=$((budget_s - (SECONDS - started)))
        [ $left -gt 0 ] || break
        say "sweep (budget $left s)"
        # The budget stops the sweep between measurements; timeout only guards against a hung call.
        timeout $((left + 90)) "$PYTHON" bench/sweep.py "$OUT" --device "$device" --budget-s "$left" "${quick[@]}" \
            "${compile[@]}" 2>&1 | tee -a "$OUT/sweep.log"
        status=${PIPESTATUS[0]}
        [ $status -eq 3 ] && [ $restarts -lt 3 ] || break
        restarts=$((restarts + 1))
        say "the CUDA context was lost; continuing in a fresh process ($restarts)"
    done
    [ $status -eq 0 ] || echo "sweep exit status $status (sweep.log); plotting what was measured"
    say "plot"
    "$PYTHON" bench/plot.py "$OUT" 2>&1 | tee "$OUT/plot.log"
    local plot_status=${PIPESTATUS[0]}
    [ $status -ne 0 ] && return $status
    return $plot_status
}

say "$step_name on $device into $OUT"
environment
if [ "$step_name" = test ]; then
    check_imports || exit 2
    say "install"
    install || exit 3
    check_backends || exit 4
    run_tests
    status=$?
else
    run_sweep
    status=$?
fi
say "done: exit status $status"
exit "$status"

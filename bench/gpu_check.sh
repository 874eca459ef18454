#!/usr/bin/env bash
# One command on a machine with a CUDA GPU (python3 with torch and Triton installed, no network):
# build and install the package (with the C++/CUDA extension, sm_90), run the whole test suite on
# the GPU, run the benchmark sweep and plot it, and record the device, driver, torch, Triton and
# CUDA versions. Everything lands in OUT; the exit status is pytest's. Target: under 8 minutes on
# an H100 (SWEEP_BUDGET_S bounds the sweep's measuring time, 240 s by default).
#
#     bash bench/gpu_check.sh OUT
set -uo pipefail
OUT=$(mkdir -p "${1:?usage: bash bench/gpu_check.sh OUT}" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
started=$SECONDS
step() { echo "== $* ($((SECONDS - started)) s)"; }

step "environment"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 --version
    python3 -c "import torch, triton; print('torch', torch.__version__, '| CUDA (torch)', torch.version.cuda, '| Triton', triton.__version__, '| device', torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
    if command -v nvcc >/dev/null; then nvcc --version | tail -n 2; else echo "nvcc: not found (CUDA_HOME=${CUDA_HOME:-unset})"; fi
} 2>&1 | tee "$OUT/environment.txt"

step "install (TORCH_CUDA_ARCH_LIST=9.0)"
# The CUDA part of spatialstats._C needs nvcc: CUDA_HOME, else nvcc on PATH, else a pip cuda-toolkit.
if [ -z "${CUDA_HOME:-}" ] && ! command -v nvcc >/dev/null; then
    CUDA_HOME=$(python3 -c 'import nvidia.cu13 as kit; print(list(kit.__path__)[0])' 2>/dev/null) && export CUDA_HOME
fi
TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    python3 -m pip install --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
echo "pip exit status $? (log: install.log)"
python3 -c "import spatialstats; print('available backends:', spatialstats.available_backends())" 2>&1 | tee -a "$OUT/environment.txt"

step "test suite"
python3 -m pytest -q 2>&1 | tee "$OUT/pytest.log"
tests_status=${PIPESTATUS[0]}

step "benchmark sweep"
python3 bench/sweep.py "$OUT" --budget-s "${SWEEP_BUDGET_S:-240}" 2>&1 | tee "$OUT/sweep.log"
python3 bench/plot.py "$OUT" 2>&1 | tee "$OUT/plot.log"

step "done: pytest exit status $tests_status"
exit "$tests_status"

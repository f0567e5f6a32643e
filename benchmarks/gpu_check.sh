#!/usr/bin/env bash
# Issue #15's device check, as one prepared run on a machine lent by the `device` tool (see the
# docstring of benchmarks/gpu_goals.py for the wheel download that must precede it here):
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=560)
# 1. the CUDA-vs-CPU float64 tests (tests marked `gpu`), 2. benchmarks/gpu_goals.py; everything
# it measured is written under $OUT (JSON after every size), also when the time limit cuts it.
# A dry run on the CPU (tests skip): OUT=/tmp/x GPU_GOALS_ARGS="--device cpu --quick" bash benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/surrogate/test_cuda.py tests/surrogate/test_memory_policy.py 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 360 python3 benchmarks/gpu_goals.py --out "$OUT/gpu_goals.json" --budget-s "${BUDGET_S:-200}" ${GPU_GOALS_ARGS:-} 2>&1 | tee "$OUT/gpu_goals.log"

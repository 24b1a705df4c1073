#!/usr/bin/env bash
# The GPU benchmark in one command, from the project root of a GPU machine with Python and a CUDA build of torch.
# Packages the machine lacks can be put in .whl/ as wheels: they are installed into /tmp/site first (no network).
# Writes into $OUT (default bench/results/latest): nvidia-smi.txt, gpu_train_bench.json and .log, checkpoint_gpu.json
# and .log; and, when build/anchor_bench.py is there (a plain-PyTorch baseline script), anchor.log from the same machine.
# Time limits: BENCH_S (default 380 s; 0 skips the benchmarks), CKPT_S (checkpoint_bench.py, default 45 s; 0 skips it)
# and ANCHOR_S (default 110 s; 0 skips it). BENCH_ARGS: more flags, e.g.
# BENCH_ARGS="--cudnn-benchmark 1 --sync-count --profile 5 --archs resnet18". CUDA_TESTS=1 first runs the notebooks' GPU tests
# (bench/gpu_tests.sh, its wheels from bench/device_test_wheels.sh; about 2 minutes, limit CUDA_TESTS_S, default 180 s):
# then give the benchmark less time (BENCH_S=300) to keep the whole command within 10 minutes.
set -o pipefail
export OUT=${OUT:-bench/results/latest}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else export PYTHONPATH=$PWD; fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/nvidia-smi.txt"
python3 -c "import sys, torch, fastai, timm; print(sys.version.split()[0], torch.__version__, fastai.__version__, timm.__version__)"
export HF_HUB_OFFLINE=1 PYTHONWARNINGS=ignore MPLBACKEND=Agg
if [ "${CUDA_TESTS:-0}" = 1 ]; then CUDA_TESTS_S=${CUDA_TESTS_S:-180} bash bench/gpu_tests.sh; fi
if [ "${BENCH_S:-380}" != 0 ]; then
  timeout "${BENCH_S:-380}" python3 bench/gpu_train_bench.py --n 10000 --img-size 500 --out "$OUT" ${BENCH_ARGS} 2>&1 \
    | grep -v -i "warn" | tee "$OUT/gpu_train_bench.log"
  [ "${CKPT_S:-45}" != 0 ] && timeout "${CKPT_S:-45}" python3 bench/checkpoint_bench.py --device cuda --out "$OUT/checkpoint_gpu.json" 2>&1 | grep -v -i warn | tee "$OUT/checkpoint_gpu.log"
fi
if [ "${ANCHOR_S:-110}" != 0 ] && [ -f build/anchor_bench.py ]; then
  (cd build && COMPILE_DEADLINE=0 timeout "${ANCHOR_S:-110}" python3 anchor_bench.py 2>&1 | grep -v -i warn | tail -25 | tee "$OUT/anchor.log")
fi
echo done

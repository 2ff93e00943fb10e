#!/usr/bin/env bash
# The prepared GPU check (a few minutes on one GPU): CUDA agreement tests, lockstep runs
# on CUDA with both manual backends and dtypes, and `bench --quick` on CUDA.
# Run from the repository root on a machine with CUDA and PyTorch:
#     OUT=gpu-check bash benchmarks/gpu_check.sh
# Wheels in .gpu/ (pure-python dependencies the machine may lack) are installed first.
set -u
OUT=${OUT:-gpu-check}            # a few text files + bench.csv/png end up here
RUNS=${RUNS:-/tmp/handgrad-gpu-runs}  # the run directories themselves
mkdir -p "$OUT" "$RUNS"
PY=${PYTHON:-python3}
if ls .gpu/*.whl >/dev/null 2>&1; then $PY -m pip install -q --no-deps .gpu/*.whl; fi
export PYTHONPATH=$PWD
{
  $PY -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
} 2>&1 | tee "$OUT/device.txt"

$PY -m pytest -q -rs -m cuda -p no:cacheprovider tests 2>&1 | tail -25 | tee "$OUT/pytest_cuda.txt"

runs="$OUT/runs.txt"; : > "$runs"
for backend in numpy torch; do
  for dtype in float64 float32; do
    for exp in seed digits; do
      name="$exp-cuda-$backend-$dtype"
      /usr/bin/time -f "$name wall %e s" $PY -m experiments run "$exp" --set device=cuda \
        --set manual_backend=$backend --set dtype=$dtype --out "$RUNS/$name" --force --quiet \
        --no-plots >>"$runs" 2>&1
      tail -1 "$RUNS/$name/summary.csv" | sed "s/^/$name: /" >>"$runs"
    done
  done
done
cat "$runs"

$PY -m experiments bench --quick --device cuda --out "$RUNS/bench" --force 2>&1 | tail -40 \
  | tee "$OUT/bench.txt"
cp "$RUNS"/bench/bench.csv "$RUNS"/bench/*.png "$OUT"/ 2>/dev/null || true

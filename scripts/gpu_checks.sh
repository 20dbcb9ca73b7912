#!/usr/bin/env bash
# Issue 7's GPU checks as one prepared command for a lent device (a few minutes of device time):
# every step has its own time limit, writes its output to $OUT/gpu_checks.log as it goes, and a
# failing step does not stop the ones after it. The order is the value per device minute of
# results/PERFORMANCE.md's "For the next lent GPU" list.
#
#   bash scripts/gpu_wheels.sh                     # here, before the call: packages the device lacks
#   # device call, carry [".whl"], timeout_s 580:
#   bash scripts/gpu_checks.sh                     # estimated 6-8 minutes on an H200 (not yet run there)
#
# Environment: OUT (log folder; default logs/), PYTHON (default python3), MODEL (bench_train_step
# model, default bert-base), TREES (bench_update trees, default "minilm bert-base"), DTYPE
# (default bfloat16), ROUNDS / STEPS (timed rounds of the step and update benchmarks, default 50
# and 100), LIMIT (seconds per step, default 150), SKIP_TESTS=1 (no pytest step), WHEELS (the
# wheel folder, default .whl; installed to /tmp/site when it holds any). The small
# values (MODEL=bert-tiny TREES=tiny ...) are for the CPU test of this script
# (tests/test_benchmarks.py); the figures then mean nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-logs}
PYTHON=${PYTHON:-python3}
MODEL=${MODEL:-bert-base}
TREES=${TREES:-minilm bert-base}
DTYPE=${DTYPE:-bfloat16}
ROUNDS=${ROUNDS:-50}
STEPS=${STEPS:-100}
LIMIT=${LIMIT:-150}
LOG=$OUT/gpu_checks.log
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then  # Packages the device image lacks (gpu_wheels.sh).
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

failed=()
step() {  # step <name> <command...>: runs it under $LIMIT seconds, logged; records a failure.
  local name=$1
  shift
  echo "=== $name: $* ($(date -u +%H:%M:%S))" | tee -a "$LOG"
  timeout "$LIMIT" "$@" 2>&1 | grep -v -e '^[WI][0-9]\{4\} ' | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  if ((rc != 0)); then
    failed+=("$name (exit $rc)")
    echo "=== $name failed: exit $rc" | tee -a "$LOG"
  fi
}

step environment "$PYTHON" -c "import jax, flax, optax, transformers; print('jax', jax.__version__, \
'flax', flax.__version__, 'optax', optax.__version__, 'transformers', transformers.__version__); \
print(jax.devices())"
if command -v nvidia-smi > /dev/null; then
  step gpu nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
# shellcheck disable=SC2086  # TREES is a list of names.
step update_kernels "$PYTHON" scripts/bench_update.py --kernels --trees $TREES \
  --variants adamw pats pats-batched
step step_kernels "$PYTHON" scripts/bench_train_step.py --model "$MODEL" --dtype "$DTYPE" \
  --batch_reductions --kernels
step step_timing "$PYTHON" scripts/bench_train_step.py --model "$MODEL" --dtype "$DTYPE" \
  --batch_reductions --flash --rounds "$ROUNDS" --warmup 3
# shellcheck disable=SC2086
step update_timing "$PYTHON" scripts/bench_update.py --trees $TREES --steps "$STEPS" --warmup 5 \
  --variants adamw pats pats-batched
if [[ -z ${SKIP_TESTS:-} ]]; then
  step tests "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_pats.py \
    tests/test_pats_contract.py -m "not slow"
fi

if ((${#failed[@]})); then
  echo "=== failed: ${failed[*]}" | tee -a "$LOG"
  exit 1
fi
echo "=== all steps passed" | tee -a "$LOG"

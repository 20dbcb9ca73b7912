#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels a GPU machine without a package registry lacks
# for `python -m scripts.bench.gpu_suite`: ml_collections (the trainer's configs) and datasets
# with the two small packages it needs beyond a usual CUDA image (dill, multiprocess). Python
# 3.12 wheels for x86-64 Linux, no dependencies resolved (the image holds the rest: absl-py,
# orbax-checkpoint, pyarrow, pandas, ...). The suite installs them from .whl/ when it starts.
#
#   bash scripts/bench/gpu_wheels.sh && du -sh .whl
#
# Environment: PYTHON (default python3), PYTHON_VERSION (of the GPU machine, default 3.12).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
  --python-version "${PYTHON_VERSION:-3.12}" --implementation cp "${PLATFORMS[@]}" -d .whl \
  ml_collections datasets dill multiprocess
ls .whl

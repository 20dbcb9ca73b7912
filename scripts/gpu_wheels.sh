#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels of what the lent GPU's image lacks for
# scripts/gpu_checks.sh and the trainer (per /work/.library/device/KINDS.md: ml_collections,
# datasets and its small dependencies, tensorboardX); the device call carries ".whl". Python 3.12
# wheels, no dependencies resolved (the image has the rest). Needs the package registry.
#
#   bash scripts/gpu_wheels.sh && du -sh .whl
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PLATFORMS=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014 manylinux1; do
  PLATFORMS+=(--platform "${tag}_x86_64")
done
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d .whl \
  ml_collections datasets dill multiprocess tensorboardX
ls .whl

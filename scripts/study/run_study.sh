#!/usr/bin/env bash
# The whole GLUE study on all-MiniLM-L6-v2 in one go: the tuning grid, the written choice
# rules, then the core, baseline and SST-2 grids at the chosen noise scale and options, then
# the tables and plots. Resumable: runs found in the archives count as finished, so running
# it again continues where it stopped. Run from anywhere; it works in the repository root.
#
#   bash scripts/study/run_study.sh                          # extends docs/glue_minilm
#   ARCHIVES=workdirs/rerun bash scripts/study/run_study.sh  # a fresh run, own archives
#   JOBS=8 SEEDS=0,1,2,3,4 SWEEP_FLAGS=--set=data.bucket_multiple=128 \
#     ARCHIVES=workdirs/gpu bash scripts/study/run_study.sh  # one GPU, 8 runs at a time
#
# Cost on 2 x86-64 CPU cores, one run at a time: about 30 hours for the 130 runs.
# Environment: ARCHIVES (folder of the packed archives runs_*.jsonl and of the tables,
# default docs/glue_minilm), ROOT (folder of the workdirs, default workdirs/study), JOBS
# (runs at a time, default 1), SEEDS (seeds of the baselines and SST-2; default the sweep
# files' own), PYTHON (default python), SWEEP_FLAGS (more flags for every sweep, e.g.
# --set=data.bucket_multiple=128: one padded shape, so a GPU compiles once per run instead
# of once per length bucket). Tuning keeps its 2 seeds and core its 5.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-1}
ARCHIVES=${ARCHIVES:-docs/glue_minilm}
ROOT=${ROOT:-workdirs/study}
SEED_FLAG=()
if [[ -n ${SEEDS:-} ]]; then SEED_FLAG=("--sweep.seeds=($SEEDS,)"); fi

sweep() {  # sweep <sweep file[:arg]> <root> <archive> [flags...]
  local file=$1 root=$2 archive=$3
  shift 3
  echo "[study] $(date -u +%H:%M:%S) $file"
  # shellcheck disable=SC2086  # SWEEP_FLAGS is a list of flags.
  "$PYTHON" -m scripts.study.sweep --sweep "configs/study/$file" --root "$root" \
    --archive "$ARCHIVES/$archive" --jobs "$JOBS" ${SWEEP_FLAGS:-} "$@"
}

sweep tune.py "${ROOT}_tune" runs_tune.jsonl
LAMBDA=$("$PYTHON" -m scripts.study.choose --runs "$ARCHIVES/runs_tune.jsonl" --quiet)
sweep "tune_options.py:$LAMBDA" "${ROOT}_tune" runs_tune.jsonl
# The rules' report goes to the log; its last line is the choice.
CHOICE=$("$PYTHON" -m scripts.study.choose --runs "$ARCHIVES/runs_tune.jsonl" \
  | tee /dev/stderr | tail -n 1)
echo "[study] chosen: $CHOICE"
sweep "core.py:$CHOICE" "$ROOT" runs_core.jsonl
sweep "baselines.py:$CHOICE" "$ROOT" runs_baselines.jsonl "${SEED_FLAG[@]}"
sweep "sst2.py:$CHOICE" "$ROOT" runs_sst2.jsonl "${SEED_FLAG[@]}"
"$PYTHON" -m scripts.study.report --archive "$ARCHIVES" --out "$ARCHIVES"
echo "[study] $(date -u +%H:%M:%S) done"

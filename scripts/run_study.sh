#!/usr/bin/env bash
# The whole issue-6 study in one go: tuning, the written choice rules, then core, baselines
# and SST-2 at the chosen noise scale and options. Resumable: finished (archived) runs are
# skipped, so running it again continues where it stopped.
#
#   bash scripts/run_study.sh                        # CPU: one run at a time, study seeds
#   JOBS=8 SEEDS=0,1,2,3,4 TAG=gpu bash scripts/run_study.sh   # one GPU: 8 runs at a time
#
# Environment: JOBS (runs at a time, default 1), SEEDS (seeds of the baselines and SST-2;
# default: the sweep files' own, 3 for the baselines and 4 for SST-2), TAG (suffix of the
# roots and archives, default none: workdirs/study_tune, results/runs/study_tune,
# workdirs/study, results/runs/study),
# ARCHIVES (folder of the archives, default results/runs), PYTHON (default python),
# SWEEP_FLAGS (more flags for every sweep, e.g. "--set=data.bucket_multiple=128": one padded
# shape, so a GPU compiles once per run instead of once per length bucket).
# Tuning keeps its 2 seeds and core its 5 (the sweep files).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
JOBS=${JOBS:-1}
SUFFIX=${TAG:+_$TAG}
TUNE_ROOT=workdirs/study_tune$SUFFIX
ARCHIVES=${ARCHIVES:-results/runs}
TUNE_ARCHIVE=$ARCHIVES/study_tune$SUFFIX
ROOT=workdirs/study$SUFFIX
ARCHIVE=$ARCHIVES/study$SUFFIX
SEED_FLAG=()
if [[ -n ${SEEDS:-} ]]; then SEED_FLAG=("--sweep.seeds=($SEEDS,)"); fi

sweep() {  # sweep <sweep file[:arg]> <root> <archive> [flags...]
  local file=$1 root=$2 archive=$3
  shift 3
  echo "[study] $(date -u +%H:%M:%S) $file"
  # shellcheck disable=SC2086  # SWEEP_FLAGS is a list of flags.
  "$PYTHON" scripts/sweep.py --sweep "configs/sweeps/$file" --root "$root" \
    --archive "$archive" --jobs "$JOBS" ${SWEEP_FLAGS:-} "$@"
}

sweep minilm_tune.py "$TUNE_ROOT" "$TUNE_ARCHIVE"
LAMBDA=$("$PYTHON" scripts/choose_pats.py --workdirs "$TUNE_ARCHIVE" --quiet)
sweep "minilm_tune_options.py:$LAMBDA" "$TUNE_ROOT" "$TUNE_ARCHIVE"
# The rules' report goes to the log; its last line is the choice.
CHOICE=$("$PYTHON" scripts/choose_pats.py --workdirs "$TUNE_ARCHIVE" | tee /dev/stderr | tail -n 1)
echo "[study] chosen: $CHOICE"
sweep "minilm_core.py:$CHOICE" "$ROOT" "$ARCHIVE"
sweep "minilm_baselines.py:$CHOICE" "$ROOT" "$ARCHIVE" "${SEED_FLAG[@]}"
sweep "minilm_sst2.py:$CHOICE" "$ROOT" "$ARCHIVE" "${SEED_FLAG[@]}"
echo "[study] $(date -u +%H:%M:%S) done"

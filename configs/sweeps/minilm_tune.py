r"""Issue 6, step 1: tune PATS's noise scale on two dev sets (CoLA, MRPC), 2 seeds.

  python scripts/sweep.py --sweep configs/sweeps/minilm_tune.py --root workdirs/study_tune \
      --archive results/runs/study_tune
  python scripts/aggregate.py --workdirs results/runs/study_tune --which final \
      --out results/study_tune

Grid: plain, and PATS with lambda in {0.01, 0.03, 0.1} (peak value; it follows the LR shape),
noise on all weight matrices (embeddings included) and min-max normalisation, seeds 0 and 1.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tuning grid."""
  del arg
  sweep = ml_collections.ConfigDict()
  sweep.config = "configs/study_minilm.py"
  sweep.model = "all-MiniLM-L6-v2"
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("mrpc", "cola")
  sweep.seeds = (0, 1)
  sweep.noise_scales = (0.01, 0.03, 0.1)
  sweep.overrides = ml_collections.ConfigDict({"progress_bar": False})
  sweep.prune_checkpoints = True  # Keep best/ only once a run has finished.
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

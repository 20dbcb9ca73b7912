r"""Tuning grid: plain fine-tuning and PATS at three noise scales on CoLA and MRPC, 2 seeds.

  python -m scripts.study.sweep --sweep configs/study/tune.py --root workdirs/study_tune \
      --archive docs/glue_minilm/runs_tune.jsonl
  python -m scripts.study.choose --runs docs/glue_minilm/runs_tune.jsonl

Grid: plain, and PATS with λ in {0.01, 0.03, 0.1} (peak value; it follows the learning-rate
shape), noise on all weight matrices (embeddings included), min-max normalisation; seeds 0
and 1; 16 runs with the protocol of `configs/study/minilm.py`. `scripts.study.choose` applies
the written rule for λ to these runs. Cost: about 3 hours on 2 x86-64 CPU cores (a CoLA run
trains in about 6-10 minutes, an MRPC run in about 12-14, plus a minute for the dev
sensitivity of each finished run).
"""

from __future__ import annotations

import ml_collections

PROTOCOL = "configs/study/minilm.py"
MODEL = "all-MiniLM-L6-v2"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tuning grid."""
  del arg
  sweep = ml_collections.ConfigDict()
  sweep.config = PROTOCOL
  sweep.model = MODEL
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("mrpc", "cola")
  sweep.seeds = (0, 1)
  sweep.noise_scales = (0.01, 0.03, 0.1)
  sweep.overrides = ml_collections.ConfigDict({"progress_bar": False})
  sweep.prune_checkpoints = True  # Keep best/ only once a run has finished.
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

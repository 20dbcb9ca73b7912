r"""A tiny sweep: 2 methods x 1 task x 2 seeds on the synthetic tiny model, 2 steps each.

  python -m scripts.study.sweep --sweep configs/sweeps/tiny.py --root workdirs/tiny \
      --archive workdirs/tiny/runs.jsonl

Four runs of seconds each on a CPU (most of it compilation); the tests use it.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tiny grid."""
  del arg
  sweep = ml_collections.ConfigDict()
  sweep.config = "configs/tiny.py"
  sweep.model = "tiny-bert"
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("rte",)
  sweep.seeds = (0, 1)
  sweep.noise_scales = (0.05,)
  sweep.overrides = ml_collections.ConfigDict(
    {"max_steps": 2, "eval_every_steps": 0, "write_test_predictions": False, "mesh": {"data": 1}}
  )
  sweep.prune_checkpoints = True  # Keep best/ only once a run has finished.
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

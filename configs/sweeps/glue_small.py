r"""Every method on the small GLUE tasks: 7 methods x 4 tasks x 5 seeds (x 3 noise scales).

  python -m scripts.study.sweep --sweep configs/sweeps/glue_small.py --root workdirs/glue_small \
      --archive workdirs/glue_small/runs.jsonl
  python -m scripts.study.aggregate --runs workdirs/glue_small/runs.jsonl \
      --out workdirs/glue_small/table

Noise scales apply to the methods with per-step PATS noise (pats, uniform, inverse); the others
run once per task and seed: 260 runs, each `python train.py` with its own workdir. Cost with
all-MiniLM-L6-v2 (the default; `:model=<name>` picks another): about 10-16 minutes per run on
2 x86-64 CPU cores, so about two days in all.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the grid; `arg` may name the model (`model=roberta-base`)."""
  sweep = ml_collections.ConfigDict()
  sweep.config = "configs/glue.py"
  sweep.model = (arg or "model=all-MiniLM-L6-v2").partition("=")[2]
  sweep.methods = ("plain", "pats", "noisytune", "uniform", "inverse", "sage", "add_noise")
  sweep.tasks = ("rte", "mrpc", "stsb", "cola")
  sweep.seeds = (0, 1, 2, 3, 4)
  sweep.noise_scales = (0.01, 0.02, 0.05)
  # Extra `--config.<key>=<value>` overrides given to every run (e.g. max_steps for a dry run).
  sweep.overrides = ml_collections.ConfigDict({"progress_bar": False})
  sweep.prune_checkpoints = True  # Keep best/ only once a run has finished.
  return sweep

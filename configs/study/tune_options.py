r"""Tuning grid, part 2: PATS's options at the chosen noise scale, on CoLA and MRPC, 2 seeds.

  python -m scripts.study.sweep --sweep configs/study/tune_options.py:<lambda> \
      --root workdirs/study_tune --archive docs/glue_minilm/runs_tune.jsonl

Shares the root and archive of `tune.py`: its plain runs and its PATS runs at `<lambda>` are
the base and are found finished there, so only the variants run (8 runs): `noemb` (no noise
on the embedding tables, `pats.noise_on_embeddings=False`) and `rank` (`pats.normalize=rank`:
importance from the rank of the sensitivity instead of its min-max scaling). Tables label
them `pats@<lambda>+noemb` and `pats@<lambda>+rank`. Cost: about 2 hours on 2 x86-64 CPU
cores (the rank runs' per-step sort makes them 2-3x slower than plain ones).
"""

from __future__ import annotations

import ml_collections

from configs.study import core, tune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the options grid at the tuned noise scale `arg`."""
  sweep = tune.get_config()
  sweep.noise_scales = (core.noise_scale_arg(arg, "configs/study/tune_options.py"),)
  sweep.variants = ml_collections.ConfigDict(core.OPTIONS)
  return sweep

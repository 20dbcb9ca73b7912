r"""PATS ablation: importance = sensitivity EMA x uncertainty EMA (`beta2=0.85`).

The importance of docs/algorithm.md, step 3, with the uncertainty term on.

python train.py --config configs/ablations/pats_uncertainty.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with the uncertainty term on (`pats.beta2 = 0.85`)."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.beta2 = 0.85
  return config

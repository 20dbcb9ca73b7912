r"""PATS ablation: importance = sensitivity EMA only (no uncertainty term, `beta2=None`).

The base PATS config already runs without the uncertainty term; this file makes the choice
explicit and pairs with `pats_uncertainty.py`, which turns it on.

  python train.py --config configs/ablations/pats_no_uncertainty.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.beta2 = None`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.beta2 = None
  return config

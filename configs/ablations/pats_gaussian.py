r"""PATS ablation: Gaussian instead of uniform noise (`distribution="gaussian"`).

python train.py --config configs/ablations/pats_gaussian.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.distribution = "gaussian"`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.distribution = "gaussian"
  return config

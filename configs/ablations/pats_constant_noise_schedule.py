r"""PATS ablation: a constant noise scale instead of one that follows the learning-rate shape.

python train.py --config configs/ablations/pats_constant_noise_schedule.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.noise_schedule = "constant"`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.noise_schedule = "constant"
  return config

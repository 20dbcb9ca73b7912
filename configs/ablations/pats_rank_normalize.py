r"""PATS ablation: rank normalisation of the importance within each matrix (`normalize="rank"`).

python train.py --config configs/ablations/pats_rank_normalize.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.normalize = "rank"`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.normalize = "rank"
  return config

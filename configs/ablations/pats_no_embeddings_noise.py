r"""PATS ablation: no noise on the embedding tables (only encoder and head matrices get noise).

python train.py --config configs/ablations/pats_no_embeddings_noise.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.noise_on_embeddings = False`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.noise_on_embeddings = False
  return config

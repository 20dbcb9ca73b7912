r"""PATS ablation: one pass, with the previous update's per-matrix statistics
(`statistics="previous"`: `std θ` one update old, `min I` and `max I` two; docs/algorithm.md,
"One pass").

python train.py --config configs/ablations/pats_previous_statistics.py:task=rte --workdir DIR
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the base PATS config with `pats.statistics = "previous"`."""
  config = glue.get_config(arg)
  glue.set_method(config, "pats")
  config.pats.statistics = "previous"
  return config

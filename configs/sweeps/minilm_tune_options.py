r"""Issue 6, step 1b: at the tuned noise scale, embeddings without noise, and rank normalisation.

  python scripts/sweep.py --sweep configs/sweeps/minilm_tune_options.py:<lambda> \
      --root workdirs/study_tune --archive results/runs/study_tune
  python scripts/aggregate.py --workdirs results/runs/study_tune --which final \
      --out results/study_tune

Shares the root (and archive) of `minilm_tune.py`: its plain runs and PATS runs at
`<lambda>` are the base and are skipped there, so only the variants run (CoLA and MRPC,
seeds 0 and 1, 8 runs): `noemb` (no noise on the embedding tables,
`pats.noise_on_embeddings=False`) and `rank` (`pats.normalize="rank"`: importance from the
rank of the sensitivity instead of its min-max scaling). Tables label them
`pats@<lambda>+noemb` and `pats@<lambda>+rank`.
"""

from __future__ import annotations

import ml_collections

from configs.sweeps import minilm_core, minilm_tune


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the options grid at the tuned noise scale `arg`."""
  sweep = minilm_tune.get_config()
  sweep.noise_scales = (minilm_core.noise_scale_arg(arg, "configs/sweeps/minilm_tune_options.py"),)
  sweep.variants = ml_collections.ConfigDict(minilm_core.OPTIONS)
  return sweep

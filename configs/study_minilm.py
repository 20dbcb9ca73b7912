r"""The GLUE study protocol for all-MiniLM-L6-v2 (issue 6): the HF GLUE example, adapted.

Changes from `configs/glue.py` (the Hugging Face `run_flax_glue.py` protocol), for a 6-layer,
384-wide model on 2 CPU cores:
- learning rate 5e-5 for every method but SAGE (2.5x, as in `glue.set_method`): small models
  want a larger step than BERT-base's 2e-5;
- 3 epochs for every task (MRPC and WNLI too, where the HF example uses 5), SST-2 1 epoch;
- batch 32, maximum length 128 with length bucketing (multiples of 16), warm-up 10% then
  linear decay, AdamW (weight decay 0.01 on weight matrices), gradient clipping at 1.0;
- dev evaluation at the end of every epoch; the study reports the FINAL dev metrics (the
  best-epoch ones are in results.json too); no test predictions; one checkpoint kept.

  python train.py --config configs/study_minilm.py:task=mrpc,method=pats,seed=0 \
      --workdir workdirs/study/mrpc/pats/seed0

A sweep over this file: `configs/sweeps/minilm_*.py`.
"""

from __future__ import annotations

import ml_collections

from configs import glue


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the study config; `arg` takes the keys of `configs/glue.py`."""
  config = glue.get_config(arg)
  base_lr = 5e-5
  config.learning_rate = base_lr * (2.5 if config.method == "sage" else 1.0)
  config.num_epochs = 1 if config.task == "sst2" else 3
  config.write_test_predictions = False
  config.keep_checkpoints = 1
  config.checkpoint_every_steps = 0
  config.log_every_steps = 10
  config.progress_bar = False
  return config

r"""The study's training protocol for all-MiniLM-L6-v2: the Hugging Face GLUE example, adapted.

Changes from `configs/glue.py` (the protocol of Hugging Face's `run_flax_glue.py`), for a
6-layer, 384-wide model:
- learning rate 5e-5 for every method but SAGE (2.5x, as in `glue.set_method`): a small model
  wants a larger step than BERT-base's 2e-5;
- SAGE as the study ran it: it scales the Adam step of every parameter and AdamW's weight decay
  with it (`sage.scaled_leaves="all"`, `sage.scale_weight_decay=True`), where the library's
  default follows SAGE's code (encoder layers' linear layers, decay unscaled);
- 3 epochs for every task (the example gives MRPC and WNLI 5), 1 epoch for SST-2;
- batch 32, maximum length 128 with length bucketing (multiples of 16), 10% linear warm-up
  then linear decay, AdamW (weight decay 0.01 on weight matrices), gradient clipping at 1.0;
- dev evaluation at the end of every epoch; the study reports the FINAL dev metrics (the
  best-epoch ones are in results.json too); no test predictions; one checkpoint kept.

  python train.py --config configs/study/minilm.py:task=mrpc,method=pats,seed=0 \
      --workdir workdirs/study/mrpc/pats/seed0

One MRPC run trains in about 14 minutes on 2 x86-64 CPU cores (no GPU). The study's sweeps
over this file are the other modules of `configs/study/`.
"""

from __future__ import annotations

import ml_collections

from configs import glue

BASE_LEARNING_RATE = 5e-5


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the study config; `arg` takes the keys of `configs/glue.py`."""
  config = glue.get_config(arg)
  config.learning_rate = BASE_LEARNING_RATE * (2.5 if config.method == "sage" else 1.0)
  config.sage.scaled_leaves = "all"
  config.sage.scale_weight_decay = True
  config.num_epochs = 1 if config.task == "sst2" else 3
  config.write_test_predictions = False
  config.keep_checkpoints = 1
  config.checkpoint_every_steps = 0
  config.log_every_steps = 10
  config.progress_bar = False
  return config

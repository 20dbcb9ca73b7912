r"""SST-2 grid: plain fine-tuning vs PATS, 1 epoch, 4 seeds.

  python -m scripts.study.sweep --sweep configs/study/sst2.py:<lambda> --root workdirs/study \
      --archive docs/glue_minilm/runs_sst2.jsonl

One epoch (`configs/study/minilm.py` sets it for SST-2; the Hugging Face example uses 3):
2,104 steps of batch 32 over 67k short sentences. `<lambda>` as in `core.py`. 8 runs; cost:
about 2 hours on 2 x86-64 CPU cores (about 15 minutes per run).
"""

from __future__ import annotations

import ml_collections

from configs.study import core


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the SST-2 grid for the noise scale `arg`."""
  sweep = core.get_config(arg)
  sweep.tasks = ("sst2",)
  sweep.seeds = (0, 1, 2, 3)
  return sweep

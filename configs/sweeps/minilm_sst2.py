r"""Issue 6, step 4: SST-2 (67k examples), plain vs PATS, 1 epoch, 4 seeds.

  python scripts/sweep.py --sweep configs/sweeps/minilm_sst2.py:<lambda> --root workdirs/study \
      --archive results/runs/study

One epoch (`configs/study_minilm.py` sets it for SST-2; the HF example uses 3): 2,104 steps of
batch 32, about 3 MRPC runs with length bucketing (measured run times: the budget in
`results/GLUE_MINILM.md`). The issue asks for 3 seeds; seed 3 was added when the CPU had the
time.
`<lambda>` as in `minilm_core.py`.
"""

from __future__ import annotations

import ml_collections

from configs.sweeps import minilm_core


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the SST-2 grid for the noise scale `arg`."""
  sweep = minilm_core.get_config(arg)
  sweep.tasks = ("sst2",)
  sweep.seeds = (0, 1, 2, 3)
  return sweep

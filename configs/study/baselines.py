r"""Baselines grid: NoisyTune, sensitivity-blind noise, inverse PATS and SAGE on 4 tasks, 3 seeds.

  python -m scripts.study.sweep --sweep configs/study/baselines.py:<lambda> \
      --root workdirs/study --archive docs/glue_minilm/runs_baselines.jsonl

CoLA, MRPC, RTE and STS-B, seeds 0-2, paired with the plain runs of `core.py` (same root and
seeds). NoisyTune: noise once before training, λ = 0.15. `uniform`: PATS with
`normalize="none"`, so r = 0 and every parameter gets the full λ·std(θ_W), the
sensitivity-blind control. `inverse`: a = λ·std(θ_W)·r, more noise where the sensitivity is
high. SAGE: its own learning rate (2.5x, `configs/study/minilm.py`). `<lambda>` is the tuned
PATS noise scale (as in `core.py`), also used by `uniform` and `inverse`, so that they differ
from PATS in the allocation only. Runs go method by method (`method_major`, the control
`uniform` first), each seed-major; `--sweep.seeds='(0,1,2,3,4)'` extends it to 5 seeds.
48 runs; cost: about 10 hours on 2 x86-64 CPU cores.
"""

from __future__ import annotations

import ml_collections

from configs.study import core


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the baselines grid for the noise scale `arg`."""
  sweep = core.get_config(arg)
  # The sensitivity-blind control first: PATS vs `uniform` isolates PATS's mechanism, so it
  # completes on every task before the other baselines start.
  sweep.methods = ("uniform", "noisytune", "inverse", "sage")
  sweep.method_major = True
  sweep.tasks = ("rte", "mrpc", "stsb", "cola")
  sweep.seeds = (0, 1, 2)
  return sweep

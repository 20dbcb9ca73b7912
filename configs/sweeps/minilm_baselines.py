r"""Issue 6, step 3: the baselines on CoLA, MRPC, RTE, STS-B, 3 seeds (paired with core's plain).

  python scripts/sweep.py --sweep configs/sweeps/minilm_baselines.py:<lambda> \
      --root workdirs/study --archive results/runs/study

NoisyTune (noise once before training, λ = 0.15), sensitivity-blind noise (`uniform`: PATS
with `normalize="none"`, so r = 0 and every parameter gets the full λ·std(θ_W), the same
noise scale), inverse PATS (`inverse`: a = λ·std(θ_W)·r, more noise where sensitivity is
high) and SAGE (its own lr, 2.5x, see `configs/glue.py`). `<lambda>` is the tuned PATS noise
scale, also used by `uniform` and `inverse` so they differ from PATS in the allocation only.
Runs go method by method (`method_major`, the control `uniform` first), each seed-major.
Seeds 0-2 here; extend `--sweep.seeds` to 5 when time allows (finished runs are skipped).
"""

from __future__ import annotations

import ml_collections

from configs.sweeps import minilm_core


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the baselines grid for the noise scale `arg`."""
  sweep = minilm_core.get_config(arg)
  # The sensitivity-blind control first: PATS vs `uniform` is the pre-registered comparison
  # (`results/GLUE_MINILM.md`), so it completes on every task before the other baselines.
  sweep.methods = ("uniform", "noisytune", "inverse", "sage")
  sweep.method_major = True
  sweep.tasks = ("rte", "mrpc", "stsb", "cola")
  sweep.seeds = (0, 1, 2)
  return sweep

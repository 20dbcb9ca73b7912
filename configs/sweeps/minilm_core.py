r"""Issue 6, step 2: plain vs PATS on CoLA, MRPC, RTE, STS-B (and WNLI, reported only), 5 seeds.

  python scripts/sweep.py --sweep configs/sweeps/minilm_core.py:<lambda> --root workdirs/study \
      --archive results/runs/study
  python scripts/aggregate.py --workdirs results/runs/study --which final --out results/study

`<lambda>` is PATS's peak noise scale chosen on the tuning grid (`minilm_tune.py`;
`results/GLUE_MINILM.md` records the choice). The protocol is `configs/study_minilm.py`.
Runs go seed-major (seed 0 of every task and method first), so a sweep stopped early still
gives paired differences on every task. The baselines (`minilm_baselines.py`) and SST-2
(`minilm_sst2.py`) write below the same root and are paired with these plain runs.
"""

from __future__ import annotations

import ml_collections


def noise_scale_arg(arg: str | None, sweep_file: str) -> float:
  """The tuned noise scale passed as `<sweep_file>:<lambda>`, checked."""
  try:
    scale = float(arg) if arg else float("nan")
  except ValueError:
    scale = float("nan")
  if not scale > 0:
    raise ValueError(
      f"{sweep_file} needs PATS's tuned noise scale: pass it as "
      f"--sweep {sweep_file}:<lambda> (a positive float, e.g. :0.03), got {arg!r}"
    )
  return scale


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the core grid for the noise scale `arg`."""
  sweep = ml_collections.ConfigDict()
  sweep.config = "configs/study_minilm.py"
  sweep.model = "all-MiniLM-L6-v2"
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("rte", "mrpc", "stsb", "cola", "wnli")
  sweep.seeds = (0, 1, 2, 3, 4)
  sweep.noise_scales = (noise_scale_arg(arg, "configs/sweeps/minilm_core.py"),)
  sweep.seed_major = True
  sweep.overrides = ml_collections.ConfigDict({"progress_bar": False})
  sweep.prune_checkpoints = True
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

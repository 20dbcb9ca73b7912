r"""Core grid: plain fine-tuning vs PATS on CoLA, MRPC, RTE, STS-B and WNLI, 5 seeds.

  python -m scripts.study.sweep --sweep configs/study/core.py:<lambda> --root workdirs/study \
      --archive docs/glue_minilm/runs_core.jsonl

`<lambda>` is PATS's peak noise scale chosen on the tuning grid, optionally followed by the
options chosen there, e.g. `:0.03+noemb` (their overrides then apply to every run; they touch
only PATS's noise, so one root holds one choice). `python -m scripts.study.choose --runs
docs/glue_minilm/runs_tune.jsonl --quiet` prints this argument. Runs go seed-major (seed 0 of
every task and method first), so a sweep stopped early still gives paired differences on
every task. 50 runs; cost: about 9 hours on 2 x86-64 CPU cores (per run, about 10 minutes
for CoLA, 12 for RTE, 14 for MRPC, 16 for STS-B and 2 for WNLI, plus a minute for the dev
sensitivity). `baselines.py` and `sst2.py` write below the same root and are paired with this
grid's plain runs.
"""

from __future__ import annotations

import ml_collections

from configs.study import tune

# PATS options tried on the tuning grid (`tune_options.py`): name -> config overrides.
OPTIONS = {
  "noemb": {"pats": {"noise_on_embeddings": False}},  # No noise on the embedding tables.
  "rank": {"pats": {"normalize": "rank"}},  # Importance from the sensitivity's rank.
}


def study_arg(arg: str | None, sweep_file: str) -> tuple[float, tuple[str, ...]]:
  """The tuned `<lambda>[+<option>...]` passed as `<sweep_file>:<arg>`, checked.

  Returns:
    The noise scale and the option names (keys of `OPTIONS`), in the order given.

  Raises:
    ValueError: the scale is missing or not positive, or an option is unknown.
  """
  head, *options = (arg or "").split("+")
  try:
    scale = float(head) if head else float("nan")
  except ValueError:
    scale = float("nan")
  if not scale > 0:
    raise ValueError(
      f"{sweep_file} needs PATS's tuned noise scale: pass it as "
      f"--sweep {sweep_file}:<lambda> (a positive float, e.g. :0.03), got {arg!r}"
    )
  unknown = [option for option in options if option not in OPTIONS]
  if unknown:
    raise ValueError(
      f"{sweep_file}:{arg}: unknown option(s) {unknown}; known: {sorted(OPTIONS)} "
      f"(e.g. :{head}+{sorted(OPTIONS)[0]})"
    )
  return scale, tuple(options)


def noise_scale_arg(arg: str | None, sweep_file: str) -> float:
  """The tuned noise scale passed as `<sweep_file>:<lambda>` (no options), checked."""
  scale, options = study_arg(arg, sweep_file)
  if options:
    raise ValueError(f"{sweep_file} takes the noise scale alone (:<lambda>), got {arg!r}")
  return scale


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the core grid for the noise scale and options `arg` (`<lambda>[+<option>...]`)."""
  sweep = ml_collections.ConfigDict()
  sweep.config = tune.PROTOCOL
  sweep.model = tune.MODEL
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("rte", "mrpc", "stsb", "cola", "wnli")
  sweep.seeds = (0, 1, 2, 3, 4)
  scale, options = study_arg(arg, "configs/study/core.py")
  sweep.noise_scales = (scale,)
  sweep.seed_major = True
  overrides = ml_collections.ConfigDict({"progress_bar": False})
  for option in options:
    overrides.update(ml_collections.ConfigDict(OPTIONS[option]))
  sweep.overrides = overrides
  sweep.prune_checkpoints = True
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

r"""Issue 6, step 2: plain vs PATS on CoLA, MRPC, RTE, STS-B (and WNLI, reported only), 5 seeds.

  python scripts/sweep.py --sweep configs/sweeps/minilm_core.py:<lambda> --root workdirs/study \
      --archive results/runs/study
  python scripts/aggregate.py --workdirs results/runs/study --which final --out results/study \
      --average_tasks=cola,mrpc,rte,stsb

`<lambda>` is PATS's peak noise scale chosen on the tuning grid (`minilm_tune.py`;
`results/GLUE_MINILM.md` records the choice), optionally followed by the options chosen there
(`minilm_tune_options.py`), e.g. `:0.03+noemb`: their overrides then apply to every run
(`OPTIONS`; they touch only PATS's noise; one root holds one choice). `scripts/choose_pats.py`
prints this argument from the tuning runs. The protocol is `configs/study_minilm.py`.
Runs go seed-major (seed 0 of every task and method first), so a sweep stopped early still
gives paired differences on every task. The baselines (`minilm_baselines.py`) and SST-2
(`minilm_sst2.py`) write below the same root and are paired with these plain runs.
"""

from __future__ import annotations

import ml_collections

# PATS options tried on the tuning grid (`minilm_tune_options.py`): name -> config overrides.
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
  sweep.config = "configs/study_minilm.py"
  sweep.model = "all-MiniLM-L6-v2"
  sweep.methods = ("plain", "pats")
  sweep.tasks = ("rte", "mrpc", "stsb", "cola", "wnli")
  sweep.seeds = (0, 1, 2, 3, 4)
  scale, options = study_arg(arg, "configs/sweeps/minilm_core.py")
  sweep.noise_scales = (scale,)
  sweep.seed_major = True
  overrides = ml_collections.ConfigDict({"progress_bar": False})
  for option in options:
    overrides.update(ml_collections.ConfigDict(OPTIONS[option]))
  sweep.overrides = overrides
  sweep.prune_checkpoints = True
  sweep.sensitivity = True  # Dev sensitivity of each finished run (its sensitivity.json).
  return sweep

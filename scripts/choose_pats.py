r"""Applies the study's written choice rules to the tuning runs; prints the core sweeps' argument.

  python scripts/choose_pats.py --workdirs results/runs/study_tune
  python scripts/sweep.py --sweep configs/sweeps/minilm_core.py:$(python \
      scripts/choose_pats.py --workdirs results/runs/study_tune --quiet) ...

The rules (`results/GLUE_MINILM.md`, fixed before the runs they judge), on the FINAL dev
scores of the tuning grid (`configs/sweeps/minilm_tune.py`, `minilm_tune_options.py`):
1. Noise scale: the λ whose PATS runs have the best seed-paired difference to plain,
   averaged over the tuning tasks, d(λ) = mean_task mean_seed (s_pats@λ − s_plain). Every
   λ must have runs on every task that plain has.
2. Options (`minilm_core.OPTIONS`): at the chosen λ, an option is taken if its mean paired
   difference to `pats@λ` (same task and seed) is positive on every tuning task; options
   with no runs yet are reported as pending and not taken.
The last line printed is `<λ>[+<option>...]`, the argument of `minilm_core.py`,
`minilm_baselines.py` and `minilm_sst2.py`.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Any

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import aggregate  # Defines --workdirs: the tuning runs (a sweep root or its archive).

from configs.sweeps import minilm_core

_QUIET = flags.DEFINE_bool("quiet", False, "Print the chosen argument only.")

METHOD = "pats"


def _mean_by_task(rows: list[dict[str, Any]], method: str) -> dict[str, float]:
  return {row["task"]: row["mean_diff"] for row in rows if row["method"] == method}


def choose_noise_scale(runs: list[dict[str, Any]]) -> tuple[float, dict[float, float]]:
  """Rule 1: the λ with the best task-averaged mean paired difference to plain.

  Returns:
    The chosen λ and d(λ) of every λ.

  Raises:
    ValueError: no plain or PATS runs, or a λ lacks paired runs on one of plain's tasks.
  """
  tasks = sorted({run["task"] for run in runs if run["method"] == aggregate.BASELINE})
  labels = sorted({run["method"] for run in runs if run["method"].startswith(f"{METHOD}@")})
  labels = [label for label in labels if "+" not in label]  # Options are rule 2's.
  if not tasks or not labels:
    raise ValueError(f"no {aggregate.BASELINE} and {METHOD}@<λ> runs to choose from")
  paired = aggregate.paired_differences(runs)
  scores = {}
  for label in labels:
    by_task = _mean_by_task(paired, label)
    missing = [task for task in tasks if task not in by_task]
    if missing:
      raise ValueError(
        f"{label} has no runs paired with {aggregate.BASELINE} on {missing}: finish the "
        "tuning sweep (configs/sweeps/minilm_tune.py) first"
      )
    scores[float(label.partition("@")[2])] = sum(by_task[task] for task in tasks) / len(tasks)
  return max(scores, key=scores.get), scores


def choose_options(
  runs: list[dict[str, Any]], noise_scale: float
) -> tuple[list[str], dict[str, dict[str, float] | None]]:
  """Rule 2: the options whose mean paired difference to `pats@λ` is positive on every task.

  Returns:
    The chosen options (in `OPTIONS` order) and, per option, its mean difference per task
    (None while it has no runs on one of the tasks).
  """
  base = f"{METHOD}@{noise_scale:g}"
  tasks = sorted({run["task"] for run in runs if run["method"] == base})
  paired = aggregate.paired_differences(runs, baseline=base)
  chosen, details = [], {}
  for option in minilm_core.OPTIONS:
    by_task = _mean_by_task(paired, f"{base}+{option}")
    if not tasks or any(task not in by_task for task in tasks):
      details[option] = None
      continue
    details[option] = by_task
    if all(by_task[task] > 0 for task in tasks):
      chosen.append(option)
  return chosen, details


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runs = aggregate.load_runs(pathlib.Path(flags.FLAGS.workdirs), which="final")
  try:
    noise_scale, scores = choose_noise_scale(runs)
  except ValueError as error:
    raise app.UsageError(f"{flags.FLAGS.workdirs}: {error}") from None
  options, details = choose_options(runs, noise_scale)
  if not _QUIET.value:
    for scale, score in sorted(scores.items()):
      print(f"d(pats@{scale:g}) = {100 * score:+.2f} (mean paired difference to plain, x100)")
    for option, by_task in details.items():
      if by_task is None:
        print(f"option {option}: pending (no runs on every task at pats@{noise_scale:g})")
      else:
        cells = ", ".join(f"{task} {100 * diff:+.2f}" for task, diff in sorted(by_task.items()))
        print(f"option {option}: {cells} -> {'taken' if option in options else 'not taken'}")
  print("+".join([f"{noise_scale:g}", *options]))


if __name__ == "__main__":
  app.run(main)

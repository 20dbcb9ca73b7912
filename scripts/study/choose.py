r"""The study's written choice rules, applied to the tuning runs; prints the core sweeps' argument.

  python -m scripts.study.choose --runs docs/glue_minilm/runs_tune.jsonl
  python -m scripts.study.sweep --sweep configs/study/core.py:$(python -m scripts.study.choose \
      --runs docs/glue_minilm/runs_tune.jsonl --quiet) --root workdirs/study ...

The rules, fixed before the runs they judge, on the FINAL dev scores of the tuning grid
(`configs/study/tune.py`, `tune_options.py`):
1. Noise scale: the λ whose PATS runs have the best seed-paired difference to plain,
   averaged over the tuning tasks, d(λ) = mean_task mean_seed (s_pats@λ − s_plain). Every
   λ must have runs on every task that plain has.
2. Options (`configs.study.core.OPTIONS`): at the chosen λ, an option is taken if its mean
   paired difference to `pats@λ` (same task and seed) is positive on every tuning task;
   options with no runs yet are reported as pending and not taken.
The last line printed is `<λ>[+<option>...]`, the argument of `configs/study/core.py`,
`baselines.py` and `sst2.py`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from configs.study import core
from scripts.study import archive, tables

METHOD = "pats"


def _mean_by_task(rows: list[dict[str, Any]], method: str) -> dict[str, float]:
  return {row["task"]: row["mean_diff"] for row in rows if row["method"] == method}


def choose_noise_scale(rows: list[dict[str, Any]]) -> tuple[float, dict[float, float]]:
  """Rule 1: the λ with the best task-averaged mean paired difference to plain.

  Args:
    rows: `tables.score_rows` of the tuning runs (final scores).

  Returns:
    The chosen λ and d(λ) of every λ.

  Raises:
    ValueError: no plain or PATS runs, or a λ lacks paired runs on one of plain's tasks.
  """
  tasks = sorted({row["task"] for row in rows if row["method"] == tables.BASELINE})
  labels = sorted({row["method"] for row in rows if row["method"].startswith(f"{METHOD}@")})
  labels = [label for label in labels if "+" not in label]  # Options are rule 2's.
  if not tasks or not labels:
    raise ValueError(f"no {tables.BASELINE} and {METHOD}@<λ> runs to choose from")
  paired = tables.paired_differences(rows)
  scores = {}
  for label in labels:
    by_task = _mean_by_task(paired, label)
    missing = [task for task in tasks if task not in by_task]
    if missing:
      raise ValueError(
        f"{label} has no runs paired with {tables.BASELINE} on {missing}: finish the "
        "tuning sweep (configs/study/tune.py) first"
      )
    scores[float(label.partition("@")[2])] = sum(by_task[task] for task in tasks) / len(tasks)
  return max(scores, key=scores.get), scores


def choose_options(
  rows: list[dict[str, Any]], noise_scale: float
) -> tuple[list[str], dict[str, dict[str, float] | None]]:
  """Rule 2: the options whose mean paired difference to `pats@λ` is positive on every task.

  Returns:
    The chosen options (in `OPTIONS` order) and, per option, its mean difference per task
    (None while it has no runs on one of the tasks).
  """
  base = f"{METHOD}@{noise_scale:g}"
  tasks = sorted({row["task"] for row in rows if row["method"] == base})
  paired = tables.paired_differences(rows, baseline=base)
  chosen, details = [], {}
  for option in core.OPTIONS:
    by_task = _mean_by_task(paired, f"{base}+{option}")
    if not tasks or any(task not in by_task for task in tasks):
      details[option] = None
      continue
    details[option] = by_task
    if all(by_task[task] > 0 for task in tasks):
      chosen.append(option)
  return chosen, details


def report(rows: list[dict[str, Any]]) -> list[str]:
  """Both rules' figures, one line each (x100), then the choice `<λ>[+<option>...]`.

  Raises:
    ValueError: as `choose_noise_scale`.
  """
  noise_scale, scores = choose_noise_scale(rows)
  options, details = choose_options(rows, noise_scale)
  lines = [
    f"d(pats@{scale:g}) = {100 * score:+.2f} (mean paired difference to plain, x100)"
    for scale, score in sorted(scores.items())
  ]
  for option, by_task in details.items():
    if by_task is None:
      lines.append(f"option {option}: pending (no runs on every task at pats@{noise_scale:g})")
    else:
      cells = ", ".join(f"{task} {100 * diff:+.2f}" for task, diff in sorted(by_task.items()))
      lines.append(f"option {option}: {cells} -> {'taken' if option in options else 'not taken'}")
  return [*lines, "+".join([f"{noise_scale:g}", *options])]


def main(argv: Sequence[str] | None = None) -> None:
  """Prints the rules' figures and the choice (`--quiet`: the choice only)."""
  command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  command.add_argument("--runs", nargs="+", required=True, help="Tuning archives or roots.")
  command.add_argument("--quiet", action="store_true", help="Print the chosen argument only.")
  flags = command.parse_args(argv)
  try:
    lines = report(tables.score_rows(archive.load(flags.runs), which="final"))
  except (ValueError, FileNotFoundError) as error:
    command.error(f"{' '.join(flags.runs)}: {error}")
  print("\n".join(lines[-1:] if flags.quiet else lines))


if __name__ == "__main__":
  main()

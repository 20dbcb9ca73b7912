r"""Summarises the PATS statistics the trainer logs (`pats/*` in metrics.jsonl) per method and task.

  python scripts/pats_stats.py --workdirs results/runs/study_tune

For every PATS-family run below `--workdirs` (a sweep root or its archive) it reads the logged
`pats/r_mean` (mean normalised importance r over the parameters with noise) and
`pats/r_below_0.1` (their share with r < 0.1), over all logged steps, and prints per method
and task: runs, the range of `r_below_0.1` over steps and runs, and the mean of `r_mean`.
With min-max normalisation a heavy-tailed sensitivity maps almost every parameter to r ≈ 0,
so the noise is almost the same everywhere; this shows how much.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys
from collections import defaultdict

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import aggregate  # Defines --workdirs.

STATISTICS = ("pats/r_below_0.1", "pats/r_mean")


def collect(root: pathlib.Path) -> dict[tuple[str, str], dict[str, list[float]]]:
  """`{(method label, task): {statistic: values over steps and runs, "runs": [count]}}`."""
  table: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
  for run in aggregate.load_runs(root):
    metrics = pathlib.Path(run["path"]) / "metrics.jsonl"
    if not metrics.exists():
      continue
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    values = {name: [row[name] for row in rows if name in row] for name in STATISTICS}
    if not values[STATISTICS[0]]:
      continue  # Not a PATS-family run.
    cell = table[run["method"], run["task"]]
    cell["runs"].append(1.0)
    for name, found in values.items():
      cell[name].extend(found)
  return table


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  table = collect(pathlib.Path(flags.FLAGS.workdirs))
  if not table:
    raise app.UsageError(f"no PATS run with logged pats/* statistics below {flags.FLAGS.workdirs}")
  print("| method | task | runs | share with r < 0.1 (min-max over steps) | mean r |")
  print("|---|---|---|---|---|")
  for (method, task), cell in sorted(table.items()):
    below, r_mean = cell["pats/r_below_0.1"], cell["pats/r_mean"]
    print(
      f"| {method} | {task} | {len(cell['runs'])} | {min(below):.3f}-{max(below):.3f} | "
      f"{statistics.mean(r_mean):.4f} |"
    )


if __name__ == "__main__":
  app.run(main)

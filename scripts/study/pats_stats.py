r"""Summarises the PATS statistics the trainer logs (`pats/*` in metrics) per method and task.

  python -m scripts.study.pats_stats --runs docs/glue_minilm/runs_tune.jsonl

For every PATS-family run in `--runs` (archives or sweep roots) it reads the logged
`pats/r_mean` (mean normalised importance r over the parameters with noise) and
`pats/r_below_0.1` (their share with r < 0.1) over all logged steps, and prints per method
and task: runs, the range of `r_below_0.1` over steps and runs, and the mean of `r_mean`.
With min-max normalisation a heavy-tailed sensitivity maps almost every parameter to r ≈ 0,
so the noise is almost the same everywhere; this shows how much.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from scripts.study import archive, tables

STATISTICS = ("pats/r_below_0.1", "pats/r_mean")


def collect(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, list[float]]]:
  """`{(method label, task): {statistic: values over steps and runs, "runs": [1.0 per run]}}`."""
  table: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
  for record, row in zip(records, tables.score_rows(records), strict=True):
    logged = record.get("metrics") or []
    values = {name: [line[name] for line in logged if name in line] for name in STATISTICS}
    if not values[STATISTICS[0]]:
      continue  # Not a PATS-family run.
    cell = table[row["method"], row["task"]]
    cell["runs"].append(1.0)
    for name, found in values.items():
      cell[name].extend(found)
  return table


def markdown(table: dict[tuple[str, str], dict[str, list[float]]]) -> str:
  """The summary as a markdown table."""
  lines = [
    "| method | task | runs | share with r < 0.1 (min-max over steps) | mean r |",
    "|---|---|---|---|---|",
  ]
  for (method, task), cell in sorted(table.items()):
    below, r_mean = cell["pats/r_below_0.1"], cell["pats/r_mean"]
    lines.append(
      f"| {method} | {task} | {len(cell['runs'])} | {min(below):.3f}-{max(below):.3f} | "
      f"{statistics.mean(r_mean):.4f} |"
    )
  return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
  """Prints the table."""
  command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  command.add_argument("--runs", nargs="+", required=True, help="Archives or sweep roots.")
  flags = command.parse_args(argv)
  try:
    table = collect(archive.load(flags.runs))
  except (ValueError, FileNotFoundError) as error:
    command.error(str(error))
  if not table:
    command.error(f"no PATS run with logged pats/* statistics in {' '.join(flags.runs)}")
  print(markdown(table), end="")


if __name__ == "__main__":
  main()

r"""Turns finished runs into mean ± std tables and paired differences (`scripts.study.tables`).

  python -m scripts.study.aggregate --runs workdirs/glue_small --out workdirs/glue_small/table
  python -m scripts.study.aggregate --which final --out workdirs/study/table \
      --runs docs/glue_minilm/runs_core.jsonl docs/glue_minilm/runs_baselines.jsonl \
      --average_tasks cola,mrpc,rte,stsb --baselines plain,uniform@0.01

`--runs` takes packed archives (`*.jsonl`, `scripts.study.archive`) and sweep roots (folders
of workdirs). `--baselines` pairs against more references than plain, e.g. `uniform@0.01`
adds every method's difference to sensitivity-blind noise, on the seeds the two share.
Writes `<out>.md`, `<out>.csv`, `<out>_paired.csv` (one row per method, task and baseline) and
`<out>_paired.png` (the differences with their intervals, one panel per baseline).
"""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Sequence

from scripts.study import archive, tables


def _list(text: str) -> list[str]:
  return [item for item in text.split(",") if item]


def parser() -> argparse.ArgumentParser:
  """The command line."""
  args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  args.add_argument("--runs", nargs="+", required=True, help="Archives (.jsonl) or sweep roots.")
  args.add_argument("--out", required=True, help="Output prefix (.md, .csv, _paired.csv/.png).")
  args.add_argument("--which", choices=["best", "final"], default="best", help="Dev score used.")
  args.add_argument(
    "--average_tasks",
    type=_list,
    default=[],
    help="Tasks of the `average` column, e.g. cola,mrpc,rte,stsb; default every task found "
    "but WNLI and AX.",
  )
  args.add_argument(
    "--baselines",
    type=_list,
    default=[tables.BASELINE],
    help="Method labels (table rows, e.g. plain,uniform@0.01) every other method is paired with.",
  )
  return args


def main(argv: Sequence[str] | None = None) -> None:
  """Writes the tables and prints the markdown."""
  command = parser()
  flags = command.parse_args(argv)
  try:
    rows = tables.score_rows(archive.load(flags.runs), which=flags.which)
    if not rows:
      command.error(f"no finished runs in {' '.join(flags.runs)}")
    rows = tables.with_average(rows, flags.average_tasks or None)
    paths = tables.write_tables(rows, pathlib.Path(flags.out), baselines=flags.baselines)
  except (ValueError, FileNotFoundError) as error:
    command.error(str(error))
  print(paths[0].read_text())
  print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
  main()

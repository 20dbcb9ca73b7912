r"""Rebuilds every table and plot of the study from its packed archives, in one command.

  python -m scripts.study.report --archive docs/glue_minilm --out docs/glue_minilm

Reads the archives the study's sweeps append to (`--archive` folder; a missing one is left
out) and writes to `--out`:

- tuning grid (`runs_tune.jsonl`): `study_tune.md/.csv`, `study_tune_paired.csv/.png`
  (final dev scores, paired with plain, `average` over the tuning tasks), `choice.txt`
  (the written choice rules, `scripts.study.choose`), `pats_stats_tune.md` (the logged
  importance statistics, `scripts.study.pats_stats`), `sensitivity_tune.md` and
  `sensitivity_tune_<task>.png` (`scripts.study.sensitivity`);
- comparison (`runs_core.jsonl`, `runs_baselines.jsonl`, `runs_sst2.jsonl`): `study.*`
  alike, the `average` over the core grid's tasks but WNLI, paired with plain and with the
  sensitivity-blind control (`uniform@<λ>`) where it ran; `pats_stats_study.md`,
  `sensitivity_study.md` and `sensitivity_study_<task>.png`.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from collections.abc import Sequence

from scripts.study import archive, choose, pats_stats, sensitivity, tables


@dataclasses.dataclass(frozen=True)
class Group:
  """Grids reported together.

  Attributes:
    name: the tables' file prefix (`<name>.md`, ...).
    archives: the archives' file names; the first one's tasks are averaged.
    sensitivity: the sensitivity report's file prefix.
    pats_stats: the logged-statistics table's file name.
    choice: the choice rules' output file name ("" for none).
  """

  name: str
  archives: tuple[str, ...]
  sensitivity: str
  pats_stats: str
  choice: str = ""


GROUPS = (
  Group("study_tune", ("runs_tune.jsonl",), "sensitivity_tune", "pats_stats_tune.md", "choice.txt"),
  Group(
    "study",
    ("runs_core.jsonl", "runs_baselines.jsonl", "runs_sst2.jsonl"),
    "sensitivity_study",
    "pats_stats_study.md",
  ),
)
CONTROL = "uniform@"  # The sensitivity-blind control's label prefix: a second baseline.


def build_group(
  group: Group, folder: pathlib.Path, out: pathlib.Path, *, plots: bool = True
) -> list[pathlib.Path]:
  """Writes one group's tables and plots; nothing if none of its archives exists."""
  present = [folder / name for name in group.archives if (folder / name).exists()]
  if not present:
    return []
  records = archive.load(present)
  scores = tables.score_rows(records, which="final")
  averaged = {row["task"] for row in tables.score_rows(archive.read(present[0]))}
  averaged = sorted(averaged - set(tables.NOT_AVERAGED))
  rows = tables.with_average(scores, averaged)
  methods = {row["method"] for row in rows}
  baselines = [tables.BASELINE, *sorted(m for m in methods if m.startswith(CONTROL))]
  paths = tables.write_tables(rows, out / group.name, baselines=baselines, plot=plots)
  if group.choice:
    paths.append(out / group.choice)
    paths[-1].write_text("\n".join(choose.report(scores)) + "\n")
  logged = pats_stats.collect(records)
  if logged:
    paths.append(out / group.pats_stats)
    paths[-1].write_text(pats_stats.markdown(logged))
  measured = sensitivity.per_run(records, include_embeddings=False)
  if measured:
    paths += sensitivity.write_report(measured, out / group.sensitivity, plots=plots)
  return paths


def build(folder: pathlib.Path, out: pathlib.Path, *, plots: bool = True) -> list[pathlib.Path]:
  """Writes every group's tables and plots from the archives in `folder` to `out`."""
  out.mkdir(parents=True, exist_ok=True)
  return [path for group in GROUPS for path in build_group(group, folder, out, plots=plots)]


def main(argv: Sequence[str] | None = None) -> None:
  """Rebuilds the report's tables and plots."""
  command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  command.add_argument("--archive", default="docs/glue_minilm", help="Folder of the archives.")
  command.add_argument("--out", default="docs/glue_minilm", help="Folder of the outputs.")
  command.add_argument("--no_plots", action="store_true", help="Tables only.")
  flags = command.parse_args(argv)
  try:
    paths = build(pathlib.Path(flags.archive), pathlib.Path(flags.out), plots=not flags.no_plots)
  except (ValueError, FileNotFoundError) as error:
    command.error(str(error))
  if not paths:
    command.error(f"no archive of {[g.archives for g in GROUPS]} in {flags.archive}")
  print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
  main()

r"""Dev-set sensitivity |θ·g| of finished runs: per-run measurement, tables and plots.

  python -m scripts.study.sensitivity --runs workdirs/study_tune --out=
  python -m scripts.study.sensitivity --runs docs/glue_minilm/runs_tune.jsonl \
      --out workdirs/sensitivity_tune

For every finished run of a sweep root (a folder with results.json), reads the run's
`sensitivity.json`, or computes it from the best checkpoint (`best/`) and writes it there:
the dev-set sensitivity of the weight matrices (`pats_jax.training.analysis`: Gini, top-1%/10%
shares, histogram of log10(s)). The per-run file is what outlives the checkpoint: the sweep
writes it as soon as a run finishes and packs it into the archive. Archives (`*.jsonl`) are
read as they are. With `--out`, then writes `<out>.md` (mean ± std of the concentration
statistics per task and method, with the final dev score beside them, and the rank
correlation of concentration with score, `scripts.study.stats.concentration_vs_score`) and
one plot per task, `<out>_<task>.png`: the share of parameters per log10(s) bin for each
method (log-scale x axis), the Gini coefficient in the legend. `--out=`: per-run files only.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from pats_jax.training import optimizers
from scripts.study import archive, stats

RUN_FILE = archive.RUN_FILES["sensitivity"]
TAIL_SHOWN_FROM = 1e-3  # The plots' x axis starts at this quantile of the pooled values.


def measure(workdir: pathlib.Path, *, include_embeddings: bool) -> dict[str, Any]:
  """The run's sensitivity record, read from `sensitivity.json` or computed and written there.

  Raises:
    ValueError: the stored record was measured with the other `include_embeddings` and the
      best checkpoint it would be recomputed from is gone.
  """
  from pats_jax.training import analysis, writers

  path = workdir / RUN_FILE
  if path.exists():
    record = json.loads(path.read_text())
    if record.get("include_embeddings") == include_embeddings:
      return record
    if not (workdir / "best").is_dir():
      raise ValueError(
        f"{path} was measured with include_embeddings={record.get('include_embeddings')} "
        f"and {workdir / 'best'} is gone; run without --include_embeddings={include_embeddings}"
      )
  report = analysis.workdir_sensitivity(workdir, include_embeddings=include_embeddings)
  results = json.loads((workdir / "results.json").read_text())
  record = report.to_json() | {
    "final_score": float(results["final"]["metrics"][results["best_metric"]]),
    "include_embeddings": include_embeddings,
  }
  writers.write_json(path, record)
  print(f"{workdir}: {report.stats}", flush=True)
  return record


def measure_root(root: pathlib.Path, *, include_embeddings: bool) -> int:
  """Measures every finished run below `root` that has a best checkpoint or a record."""
  folders = [
    folder
    for folder in archive.run_folders(root)
    if (folder / RUN_FILE).exists() or (folder / "best").is_dir()
  ]
  for folder in folders:
    measure(folder, include_embeddings=include_embeddings)
  return len(folders)


def per_run(records: list[dict[str, Any]], *, include_embeddings: bool) -> list[dict[str, Any]]:
  """The sensitivity records of run records that have one, labelled as the score tables are.

  Sorted by run name, so that the permutation tests see the same order however the runs were
  archived.

  Raises:
    ValueError: a record was measured with the other `include_embeddings`.
  """
  found = []
  for record in sorted(records, key=lambda record: record["run"]):
    sensitivity = record.get("sensitivity")
    if not sensitivity:
      continue
    if sensitivity.get("include_embeddings") != include_embeddings:
      raise ValueError(
        f"run {record['run']} was measured with include_embeddings="
        f"{sensitivity.get('include_embeddings')}; an archive cannot measure it again: run "
        f"without --include_embeddings={include_embeddings}"
      )
    label = optimizers.method_label(record["results"]["method"], record["config"])
    found.append(sensitivity | {"method": label})
  return found


def plot(task: str, records: list[dict[str, Any]], path: pathlib.Path) -> None:
  """The share of parameters per log10(s) bin, one line per method (mean, runs' range)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  edges = np.asarray(records[0]["log10_bins"])
  centers = 10 ** ((edges[:-1] + edges[1:]) / 2)
  by_method = collections.defaultdict(list)
  for record in records:
    by_method[record["method"]].append(record)
  figure, axis = plt.subplots(figsize=(7, 4))
  for method, group in sorted(by_method.items()):
    counts = np.array([record["histogram"] for record in group], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    gini = np.mean([record["stats"]["gini"] for record in group])
    (line,) = axis.plot(
      centers, shares.mean(axis=0), label=f"{method} (Gini {gini:.3f}, n={len(group)})"
    )
    if len(group) > 1:  # The runs' range around their mean.
      axis.fill_between(
        centers, shares.min(axis=0), shares.max(axis=0), alpha=0.25, lw=0, color=line.get_color()
      )
  # The x axis spans the bulk: from the pooled 0.1% quantile (a few parameters reach down to
  # ~1e-15 and would squeeze the rest into a corner) to the largest value.
  pooled = np.sum([record["histogram"] for record in records], axis=0).astype(float)
  cumulative = np.cumsum(pooled) / pooled.sum()
  low = int(np.searchsorted(cumulative, TAIL_SHOWN_FROM))
  high = int(np.flatnonzero(pooled)[-1])
  axis.set_xlim(centers[max(low - 1, 0)], centers[min(high + 1, centers.size - 1)])
  axis.set_xscale("log")
  hidden = cumulative[max(low - 2, 0)] if low >= 2 else 0.0
  axis.set_xlabel(
    "sensitivity |θ·g| on the dev set (best checkpoint)"
    + (f"; {hidden:.3%} of parameters below the axis" if hidden > 0 else "")
  )
  axis.set_ylabel("share of parameters")
  axis.set_title(f"{task}: sensitivity of weight matrices")
  axis.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def _mean_std(values: list[float]) -> str:
  return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"


def table(records: list[dict[str, Any]]) -> str:
  """Mean ± std of the concentration statistics and final score per task and method."""
  cells = collections.defaultdict(list)
  for record in records:
    cells[(record["task"], record["method"])].append(record)
  lines = [
    "| task | method | runs | Gini | top-1% share | top-10% share | final dev score |",
    "|---|---|---|---|---|---|---|",
  ]
  for (task, method), group in sorted(cells.items()):
    lines.append(
      f"| {task} | {method} | {len(group)} | "
      f"{_mean_std([r['stats']['gini'] for r in group])} | "
      f"{_mean_std([r['stats']['top1_share'] for r in group])} | "
      f"{_mean_std([r['stats']['top10_share'] for r in group])} | "
      f"{_mean_std([r['final_score'] for r in group])} |"
    )
  return "\n".join(lines) + "\n"


def _p(value: float) -> str:
  if np.isnan(value):
    return "n/a"
  return "<0.001" if value < 0.001 else f"{value:.3f}"


def _rho(value: float) -> str:
  return "n/a" if np.isnan(value) else f"{value:+.2f}"


def correlation_table(records: list[dict[str, Any]]) -> str:
  """`stats.concentration_vs_score` of `records` as a markdown table with its legend."""
  lines = [
    "Spearman's ρ between the Gini coefficient and the final dev score",
    "(`scripts.study.stats.concentration_vs_score`). `across`: all runs of the task, scores",
    "permuted within task. `seeds`: Gini and score centred within each task and method,",
    "averaged per seed (one point per task and seed: a task's methods share their seeds),",
    "permuted within task. `all`: the tasks but WNLI and AX pooled after centring within task.",
    "p: 10,000 permutations, two-sided; tasks or cells with one score throughout are left out.",
    "",
    "| task | runs | ρ across | p | seeds | ρ seeds | p |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in stats.concentration_vs_score(records):
    lines.append(
      f"| {row['task']} | {row['runs']} | {_rho(row['rho_across'])} | {_p(row['p_across'])} | "
      f"{row['seeds']} | {_rho(row['rho_seeds'])} | {_p(row['p_seeds'])} |"
    )
  return "\n".join(lines) + "\n"


def write_report(
  records: list[dict[str, Any]], out: pathlib.Path, *, plots: bool = True
) -> list[pathlib.Path]:
  """Writes `<out>.md` and, with `plots`, `<out>_<task>.png` per task; returns the paths."""
  out.parent.mkdir(parents=True, exist_ok=True)
  md = out.with_name(out.name + ".md")
  md.write_text(table(records) + "\n" + correlation_table(records))
  paths = [md]
  for task in sorted({record["task"] for record in records}) if plots else []:
    paths.append(out.with_name(f"{out.name}_{task}.png"))
    plot(task, [r for r in records if r["task"] == task], paths[-1])
  return paths


def main(argv: Sequence[str] | None = None) -> None:
  """Measures the runs of sweep roots, then writes the tables and plots (unless `--out=`)."""
  command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  command.add_argument("--runs", nargs="+", required=True, help="Archives or sweep roots.")
  command.add_argument("--out", required=True, help="Output prefix; empty: per-run files only.")
  command.add_argument(
    "--include_embeddings", action="store_true", help="Count the embedding tables too."
  )
  flags = command.parse_args(argv)
  try:
    for source in map(pathlib.Path, flags.runs):
      if source.is_dir():
        measure_root(source, include_embeddings=flags.include_embeddings)
    if not flags.out:
      return
    records = per_run(archive.load(flags.runs), include_embeddings=flags.include_embeddings)
  except (ValueError, FileNotFoundError) as error:
    command.error(str(error))
  if not records:
    command.error(f"no run with a sensitivity record in {' '.join(flags.runs)}")
  paths = write_report(records, pathlib.Path(flags.out))
  print(paths[0].read_text())
  print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
  main()

r"""Turns sweep workdirs into mean ± std tables and paired differences against plain fine-tuning.

  python scripts/aggregate.py --workdirs workdirs/glue_small --out results/glue_small

Reads every `results.json` (and its `config.json`) below `--workdirs`. A row is a method
(PATS-family methods with their noise scale, e.g. `pats@0.02`), a column a task; a cell is
the mean ± sample standard deviation over seeds of the task's score (`--which=best`: the best
dev checkpoint's `best_metric`; `final`: the same metric at the end of training). Paired
differences subtract plain fine-tuning's score of the same task and seed; the 95% confidence
interval of their mean is mean ± t(0.975, n−1) · sd / √n (Student's t, `scipy.stats.t`).
The `average` column is, per method and seed, the mean score over the averaged tasks
(`--average_tasks`; default every task found but WNLI and AX, which GLUE papers report apart),
for the seeds that have all of them; it is summarised and paired like a task.
`--baselines` pairs against more references than plain, e.g. `plain,uniform@0.01` adds every
method's difference to sensitivity-blind noise (PATS's mechanism in isolation), on the seeds
the two share. Writes `<out>.md`, `<out>.csv`, `<out>_paired.csv` (one row per method,
task and baseline) and `<out>_paired.png` (the differences with their intervals, one panel per
baseline).

  python scripts/aggregate.py --workdirs results/runs/study --which final --out results/study \
      --average_tasks=cola,mrpc,rte,stsb --baselines=plain,uniform@0.01
"""

from __future__ import annotations

import csv
import json
import math
import pathlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app, flags
from scipy import stats

from pats_jax.training import optimizers

BASELINE = "plain"
AVERAGE = "average"
NOT_AVERAGED = ("wnli", "ax")  # Reported, not averaged (their dev sets say little).

_WORKDIRS = flags.DEFINE_string(
  "workdirs", "workdirs/sweep", "Folder searched for results.json files (a sweep's --root)."
)
_OUT = flags.DEFINE_string("out", "results/sweep", "Output path prefix (.md, .csv, _paired.csv).")
_WHICH = flags.DEFINE_enum("which", "best", ["best", "final"], "Which dev score to aggregate.")
_AVERAGE_TASKS = flags.DEFINE_list(
  "average_tasks",
  [],
  "Tasks of the `average` column (e.g. cola,mrpc,rte,stsb); empty: every task found but "
  "WNLI and AX.",
)
_BASELINES = flags.DEFINE_list(
  "baselines",
  [BASELINE],
  "Method labels (as in the table's rows, e.g. plain,uniform@0.01) that every other method is "
  "paired against, one table each.",
)


def load_runs(root: pathlib.Path, *, which: str = "best") -> list[dict[str, Any]]:
  """One record (task, method label, seed, score) per finished run below `root`.

  Raises:
    ValueError: a results.json lacks the fields written by `train.py`.
  """
  runs = []
  for path in sorted(root.rglob("results.json")):
    results = json.loads(path.read_text())
    config_path = path.parent / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    try:
      metric = results["best_metric"]
      score = results["best"]["value"] if which == "best" else results["final"]["metrics"][metric]
      method = results["method"]
    except KeyError as error:
      raise ValueError(f"{path}: missing field {error}; is it a train.py results.json?") from None
    runs.append(
      {
        "task": results["task"],
        "method": optimizers.method_label(method, config),
        "seed": int(results["seed"]),
        "metric": metric,
        "score": float("nan") if score is None else float(score),
        "path": str(path.parent),
      }
    )
  return runs


def with_average(
  runs: list[dict[str, Any]], tasks: list[str] | None = None
) -> list[dict[str, Any]]:
  """`runs` plus one `average` record per (method, seed) that has a run on every task averaged.

  Args:
    runs: records of `load_runs`.
    tasks: the tasks averaged; None: every task in `runs` but `NOT_AVERAGED`.

  Raises:
    ValueError: a task in `tasks` has no runs.
  """
  found = {run["task"] for run in runs}
  tasks = sorted(found - set(NOT_AVERAGED)) if tasks is None else sorted(tasks)
  missing = [task for task in tasks if task not in found]
  if missing:
    raise ValueError(f"--average_tasks names tasks without runs: {missing}; found {sorted(found)}")
  if len(tasks) < 2:
    return runs  # An average of one task is that task.
  scores: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
  for run in runs:
    if run["task"] in tasks:
      scores[run["method"], run["seed"]][run["task"]] = run["score"]
  averages = [
    {
      "task": AVERAGE,
      "method": method,
      "seed": seed,
      "metric": "mean of " + ", ".join(tasks),
      "score": float(np.mean([by_task[task] for task in tasks])),
      "path": "",
    }
    for (method, seed), by_task in sorted(scores.items())
    if len(by_task) == len(tasks)
  ]
  return runs + averages


def _task_order(task: str) -> tuple[bool, str]:
  return task == AVERAGE, task  # The average last.


def summarize(runs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
  """`{(method, task): {"mean", "std", "n"}}` over seeds (std: sample std, 0 for one run)."""
  scores: dict[tuple[str, str], list[float]] = defaultdict(list)
  for run in runs:
    scores[run["method"], run["task"]].append(run["score"])
  return {
    key: {
      "mean": float(np.mean(values)),
      "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
      "n": len(values),
    }
    for key, values in scores.items()
  }


def paired_differences(
  runs: list[dict[str, Any]], *, confidence: float = 0.95, baseline: str = BASELINE
) -> list[dict[str, Any]]:
  """Seed-paired differences `method − baseline` per task: mean, CI bounds, n."""
  by_key = {(run["method"], run["task"], run["seed"]): run["score"] for run in runs}
  rows = []
  pairs = {(run["method"], run["task"]) for run in runs}
  for method, task in sorted(pairs, key=lambda pair: (pair[0], *_task_order(pair[1]))):
    if method == baseline:
      continue
    diffs = [
      by_key[method, task, seed] - by_key[baseline, task, seed]
      for (m, t, seed) in sorted(by_key)
      if m == method and t == task and (baseline, task, seed) in by_key
    ]
    if not diffs:
      continue
    n, mean = len(diffs), float(np.mean(diffs))
    if n > 1:
      half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(diffs, ddof=1) / math.sqrt(n))
    else:
      half = float("nan")
    rows.append(
      {
        "method": method,
        "baseline": baseline,
        "task": task,
        "n": n,
        "mean_diff": mean,
        "ci_low": mean - half,
        "ci_high": mean + half,
      }
    )
  return rows


def by_baseline(paired: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
  """`paired_differences` rows grouped by their baseline, in order of first appearance."""
  groups: dict[str, list[dict[str, Any]]] = {}
  for row in paired:
    groups.setdefault(row["baseline"], []).append(row)
  return groups


def markdown(
  summary: dict[tuple[str, str], dict[str, float]],
  paired: list[dict[str, Any]],
  *,
  scale: float = 100.0,
) -> str:
  """Markdown tables: scores (x `scale`) mean ± std (n), then paired differences with 95% CI.

  `paired` rows come from `paired_differences`; one table per baseline, in order of appearance.
  """
  methods = sorted({method for method, _ in summary}, key=lambda m: (m != BASELINE, m))
  tasks = sorted({task for _, task in summary}, key=_task_order)
  lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
  for method in methods:
    cells = []
    for task in tasks:
      cell = summary.get((method, task))
      cells.append(
        ""
        if cell is None
        else f"{scale * cell['mean']:.2f} ± {scale * cell['std']:.2f} ({cell['n']})"
      )
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  for baseline, rows in by_baseline(paired).items():
    lines += [
      "",
      f"Paired difference vs {baseline} (same seeds), mean [95% CI]:",
      "",
      "| method | task | n | difference |",
      "|---|---|---|---|",
    ]
    for row in rows:
      interval = (
        f"[{scale * row['ci_low']:+.2f}, {scale * row['ci_high']:+.2f}]"
        if row["n"] > 1
        else "(no interval from one seed)"
      )
      lines.append(
        f"| {row['method']} | {row['task']} | {row['n']} | "
        f"{scale * row['mean_diff']:+.2f} {interval} |"
      )
  return "\n".join(lines) + "\n"


def plot_paired(paired: list[dict[str, Any]], path: pathlib.Path, *, scale: float = 100.0) -> None:
  """Forest plot: each method's mean paired difference per task with its 95% interval.

  One panel per baseline; a row per (method, task), the `average` last within a method; a
  difference from one seed is a point without an interval.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  groups = by_baseline(paired)
  baselines, panels = list(groups), list(groups.values())
  height = 1.0 + 0.28 * max(len(rows) for rows in panels)
  figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), height), squeeze=False)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for axis, baseline, rows in zip(axes[0], baselines, panels, strict=True):
    methods = list(dict.fromkeys(row["method"] for row in rows))
    positions = np.arange(len(rows))[::-1]
    for y, row in zip(positions, rows, strict=True):
      mean = scale * row["mean_diff"]
      half = scale * (row["ci_high"] - row["mean_diff"]) if row["n"] > 1 else 0.0
      color = colors[methods.index(row["method"]) % len(colors)]
      marker = "D" if row["task"] == AVERAGE else "o"
      axis.errorbar(mean, y, xerr=half, fmt=marker, color=color, capsize=3)
    axis.axvline(0.0, color="gray", linewidth=0.8)
    axis.set_yticks(positions, [f"{r['method']}: {r['task']} (n={r['n']})" for r in rows])
    axis.set_xlabel(f"difference x{scale:g}" if scale != 1 else "difference")
    axis.set_title(f"vs {baseline}: mean, 95% CI (same seeds)", fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def write_tables(
  runs: list[dict[str, Any]], out: pathlib.Path, *, baselines: Sequence[str] = (BASELINE,)
) -> list[pathlib.Path]:
  """Writes `<out>.md`, `<out>.csv` (per method and task), `<out>_paired.csv` and `.png`.

  Raises:
    ValueError: a baseline is not a method label of `runs`.
  """
  methods = {run["method"] for run in runs}
  unknown = [baseline for baseline in baselines if baseline not in methods]
  if unknown:
    raise ValueError(f"--baselines {unknown} have no runs; methods found: {sorted(methods)}")
  summary = summarize(runs)
  paired = [
    row
    for i, baseline in enumerate(baselines)
    for row in paired_differences(runs, baseline=baseline)
    if row["method"] not in baselines[:i]  # Shown already, with the other sign.
  ]
  out.parent.mkdir(parents=True, exist_ok=True)
  md, table, paired_csv, paired_png = (
    out.with_name(out.name + suffix) for suffix in (".md", ".csv", "_paired.csv", "_paired.png")
  )
  md.write_text(markdown(summary, paired))
  with table.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["method", "task", "mean", "std", "n"])
    for (method, task), cell in sorted(summary.items()):
      writer.writerow([method, task, cell["mean"], cell["std"], cell["n"]])
  with paired_csv.open("w", newline="") as f:
    writer = csv.DictWriter(
      f, ["method", "baseline", "task", "n", "mean_diff", "ci_low", "ci_high"]
    )
    writer.writeheader()
    writer.writerows(paired)
  if not paired:
    return [md, table, paired_csv]
  plot_paired(paired, paired_png)
  return [md, table, paired_csv, paired_png]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runs = load_runs(pathlib.Path(_WORKDIRS.value), which=_WHICH.value)
  if not runs:
    raise app.UsageError(f"no results.json below {_WORKDIRS.value}")
  try:
    runs = with_average(runs, _AVERAGE_TASKS.value or None)
    paths = write_tables(runs, pathlib.Path(_OUT.value), baselines=_BASELINES.value)
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  print(paths[0].read_text())
  print("Wrote " + ", ".join(str(path) for path in paths))


if __name__ == "__main__":
  app.run(main)

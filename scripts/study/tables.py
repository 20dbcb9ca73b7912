r"""Score tables of a grid: mean ± std per method and task, and paired differences with 95% CIs.

A row is a method (PATS-family methods with their noise scale, e.g. `pats@0.02`, and a named
variant after `+`), a column a task; a cell is the mean ± sample standard deviation over seeds
of the task's score (`which="best"`: the best dev checkpoint's `best_metric`; `"final"`: the
same metric at the end of training). Paired differences subtract a baseline's score of the
same task and seed; the 95% confidence interval of their mean is

  d̄ ± t(0.975, n−1) · sd(d) / √n   (Student's t, `scipy.stats.t`).

The `average` column is, per method and seed, the mean score over the averaged tasks (default
every task but WNLI and AX, which GLUE papers report apart), for the seeds that have all of
them; it is summarised and paired like a task.
"""

from __future__ import annotations

import csv
import math
import pathlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from pats_jax.training import optimizers

BASELINE = "plain"
AVERAGE = "average"
NOT_AVERAGED = ("wnli", "ax")  # Reported, not averaged (their dev sets say little).


def score_rows(records: list[dict[str, Any]], *, which: str = "best") -> list[dict[str, Any]]:
  """One row (task, method label, seed, metric, score) per run record (`scripts.study.archive`).

  Raises:
    ValueError: a record's results lack the fields written by `train.py`.
  """
  rows = []
  for record in records:
    results, config = record["results"], record.get("config") or {}
    try:
      metric = results["best_metric"]
      score = results["best"]["value"] if which == "best" else results["final"]["metrics"][metric]
      method = results["method"]
      task, seed = results["task"], int(results["seed"])
    except KeyError as error:
      raise ValueError(
        f"run {record['run']}: missing field {error}; is it a train.py results.json?"
      ) from None
    rows.append(
      {
        "task": task,
        "method": optimizers.method_label(method, config),
        "seed": seed,
        "metric": metric,
        "score": float("nan") if score is None else float(score),
      }
    )
  return rows


def with_average(
  rows: list[dict[str, Any]], tasks: Sequence[str] | None = None
) -> list[dict[str, Any]]:
  """`rows` plus one `average` row per (method, seed) that has a score on every averaged task.

  Args:
    rows: rows of `score_rows`.
    tasks: the tasks averaged; None: every task in `rows` but `NOT_AVERAGED`.

  Raises:
    ValueError: a task in `tasks` has no rows.
  """
  found = {row["task"] for row in rows}
  tasks = sorted(found - set(NOT_AVERAGED)) if tasks is None else sorted(tasks)
  missing = [task for task in tasks if task not in found]
  if missing:
    raise ValueError(f"averaged tasks without runs: {missing}; found {sorted(found)}")
  if len(tasks) < 2:
    return rows  # An average of one task is that task.
  scores: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
  for row in rows:
    if row["task"] in tasks:
      scores[row["method"], row["seed"]][row["task"]] = row["score"]
  averages = [
    {
      "task": AVERAGE,
      "method": method,
      "seed": seed,
      "metric": "mean of " + ", ".join(tasks),
      "score": float(np.mean([by_task[task] for task in tasks])),
    }
    for (method, seed), by_task in sorted(scores.items())
    if len(by_task) == len(tasks)
  ]
  return rows + averages


def _task_order(task: str) -> tuple[bool, str]:
  return task == AVERAGE, task  # The average last.


def _method_order(method: str) -> tuple[bool, str]:
  return method != BASELINE, method  # The baseline first.


def summarize(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
  """`{(method, task): {"mean", "std", "n"}}` over seeds (std: sample std, 0 for one run)."""
  scores: dict[tuple[str, str], list[float]] = defaultdict(list)
  for row in rows:
    scores[row["method"], row["task"]].append(row["score"])
  return {
    key: {
      "mean": float(np.mean(values)),
      "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
      "n": len(values),
    }
    for key, values in scores.items()
  }


def paired_differences(
  rows: list[dict[str, Any]], *, confidence: float = 0.95, baseline: str = BASELINE
) -> list[dict[str, Any]]:
  """Seed-paired differences `method − baseline` per task: mean, CI bounds, n."""
  by_key = {(row["method"], row["task"], row["seed"]): row["score"] for row in rows}
  paired = []
  pairs = {(row["method"], row["task"]) for row in rows}
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
    paired.append(
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
  return paired


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
  methods = sorted({method for method, _ in summary}, key=_method_order)
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
  for baseline, group in by_baseline(paired).items():
    lines += [
      "",
      f"Paired difference vs {baseline} (same seeds), mean [95% CI]:",
      "",
      "| method | task | n | difference |",
      "|---|---|---|---|",
    ]
    for row in group:
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


def per_seed_markdown(rows: list[dict[str, Any]], *, scale: float = 100.0) -> str:
  """A markdown table of every score (x `scale`): a cell lists a method's seeds in order."""
  scores: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
  for row in rows:
    if row["task"] != AVERAGE:
      scores[row["method"], row["task"]][row["seed"]] = row["score"]
  methods = sorted({method for method, _ in scores}, key=_method_order)
  tasks = sorted({task for _, task in scores})
  lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
  for method in methods:
    cells = []
    for task in tasks:
      by_seed = scores.get((method, task), {})
      cells.append(" / ".join(f"{seed}: {scale * by_seed[seed]:.2f}" for seed in sorted(by_seed)))
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
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
  for axis, baseline, group in zip(axes[0], baselines, panels, strict=True):
    methods = list(dict.fromkeys(row["method"] for row in group))
    positions = np.arange(len(group))[::-1]
    for y, row in zip(positions, group, strict=True):
      mean = scale * row["mean_diff"]
      half = scale * (row["ci_high"] - row["mean_diff"]) if row["n"] > 1 else 0.0
      color = colors[methods.index(row["method"]) % len(colors)]
      marker = "D" if row["task"] == AVERAGE else "o"
      axis.errorbar(mean, y, xerr=half, fmt=marker, color=color, capsize=3)
    axis.axvline(0.0, color="gray", linewidth=0.8)
    axis.set_yticks(positions, [f"{r['method']}: {r['task']} (n={r['n']})" for r in group])
    axis.set_xlabel(f"difference x{scale:g}" if scale != 1 else "difference")
    axis.set_title(f"vs {baseline}: mean, 95% CI (same seeds)", fontsize=10)
  figure.tight_layout()
  figure.savefig(path, dpi=120)
  plt.close(figure)


def write_tables(
  rows: list[dict[str, Any]],
  out: pathlib.Path,
  *,
  baselines: Sequence[str] = (BASELINE,),
  plot: bool = True,
) -> list[pathlib.Path]:
  """Writes `<out>.md` (tables and every seed's score), `<out>.csv` (per method and task),
  `<out>_paired.csv` and, with `plot`, `<out>_paired.png`.

  Raises:
    ValueError: a baseline is not a method label of `rows`.
  """
  methods = {row["method"] for row in rows}
  unknown = [baseline for baseline in baselines if baseline not in methods]
  if unknown:
    raise ValueError(f"baselines {unknown} have no runs; methods found: {sorted(methods)}")
  summary = summarize(rows)
  paired = [
    row
    for i, baseline in enumerate(baselines)
    for row in paired_differences(rows, baseline=baseline)
    if row["method"] not in baselines[:i]  # Shown already, with the other sign.
  ]
  out.parent.mkdir(parents=True, exist_ok=True)
  md, table, paired_csv, paired_png = (
    out.with_name(out.name + suffix) for suffix in (".md", ".csv", "_paired.csv", "_paired.png")
  )
  seeds = "\nEvery run's score (seed: score):\n\n" + per_seed_markdown(rows)
  md.write_text(markdown(summary, paired) + seeds)
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
  if not paired or not plot:
    return [md, table, paired_csv]
  plot_paired(paired, paired_png)
  return [md, table, paired_csv, paired_png]

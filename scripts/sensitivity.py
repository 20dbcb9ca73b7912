r"""Sensitivity |θ·g| on the dev set of finished runs: distributions per method and task.

  python scripts/sensitivity.py --workdirs workdirs/study_tune --out results/sensitivity
  python scripts/sensitivity.py --workdirs results/runs/study_tune --out results/sensitivity

For every run folder below `--workdirs` (a folder with results.json), reads the run's
`sensitivity.json`, or computes it from the best checkpoint (`best/`) and writes it there:
the dev-set sensitivity of the weight matrices (`pats_jax.analysis`: Gini, top-1%/10%
shares, histogram of log10(s)). The per-run file is what outlives the checkpoint: the sweep
writes it as soon as a run finishes and archives it with results.json (`sweep.py
--archive`). With `--out`, then writes `<out>.json` (all runs), `<out>.md` (mean ± std of
the concentration statistics per task and method, with the final dev score beside them, and
the rank correlation of concentration with score, `analysis.concentration_vs_score`) and one
plot per task, `<out>_<task>.png`: the density of log10(s) per method (log-scale x axis),
the Gini coefficient in the legend. With `--out=` only the per-run files are written.
"""

from __future__ import annotations

import collections
import json
import pathlib

import numpy as np
from absl import app, flags

from pats_jax.training import optimizers

_WORKDIRS = flags.DEFINE_string("workdirs", None, "Folder searched for run folders.", required=True)
_OUT = flags.DEFINE_string(
  "out", "results/sensitivity", "Output prefix (.json, .md, _<task>.png); empty: per-run only."
)
_EMBEDDINGS = flags.DEFINE_bool("include_embeddings", False, "Count the embedding tables too.")


RUN_FILE = "sensitivity.json"
TAIL_SHOWN_FROM = 1e-3  # The plots' x axis starts at this quantile of the pooled values.


def _run_folders(root: pathlib.Path) -> list[pathlib.Path]:
  """Finished runs below `root` whose sensitivity is known or can be computed."""
  return sorted(
    path.parent
    for path in root.rglob("results.json")
    if (path.parent / RUN_FILE).exists() or (path.parent / "best").is_dir()
  )


def run_record(workdir: pathlib.Path, *, include_embeddings: bool) -> dict:
  """The run's sensitivity record, read from `sensitivity.json` or computed and written there.

  Raises:
    ValueError: the stored record was measured with the other `include_embeddings` and the
      best checkpoint it would be recomputed from is gone.
  """
  from pats_jax import analysis
  from pats_jax.training import writers

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
  record = report.to_json() | {
    "final_score": _final_score(workdir),
    "include_embeddings": include_embeddings,
  }
  writers.write_json(path, record)
  print(f"{workdir}: {report.stats}", flush=True)
  return record


def _final_score(workdir: pathlib.Path) -> float:
  results = json.loads((workdir / "results.json").read_text())
  return float(results["final"]["metrics"][results["best_metric"]])


def _plot(task: str, records: list[dict], path: pathlib.Path) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from pats_jax import analysis

  centers = 10 ** ((analysis.LOG10_BINS[:-1] + analysis.LOG10_BINS[1:]) / 2)
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


def _table(records: list[dict]) -> str:
  cells = collections.defaultdict(list)
  for record in records:
    cells[(record["task"], record["method"])].append(record)
  lines = [
    "| task | method | runs | Gini | top-1% share | top-10% share | final dev score |",
    "|---|---|---|---|---|---|---|",
  ]
  for (task, method), group in sorted(cells.items()):

    def stat(values: list[float]) -> str:
      return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0:.4f}"

    lines.append(
      f"| {task} | {method} | {len(group)} | "
      f"{stat([r['stats']['gini'] for r in group])} | "
      f"{stat([r['stats']['top1_share'] for r in group])} | "
      f"{stat([r['stats']['top10_share'] for r in group])} | "
      f"{stat([r['final_score'] for r in group])} |"
    )
  return "\n".join(lines) + "\n"


def _p(value: float) -> str:
  if np.isnan(value):
    return "n/a"
  return "<0.001" if value < 0.001 else f"{value:.3f}"


def _rho(value: float) -> str:
  return "n/a" if np.isnan(value) else f"{value:+.2f}"


def _correlation_table(records: list[dict]) -> str:
  from pats_jax import analysis

  lines = [
    "Spearman's ρ between the Gini coefficient and the final dev score",
    "(`pats_jax.analysis.concentration_vs_score`). `across`: all runs of the task, scores",
    "permuted within task. `seeds`: Gini and score centred within each task and method,",
    "averaged per seed (one point per task and seed: a task's methods share their seeds),",
    "permuted within task. `all`: the tasks but WNLI and AX pooled after centring within task.",
    "p: 10,000 permutations, two-sided; tasks or cells with one score throughout are left out.",
    "",
    "| task | runs | ρ across | p | seeds | ρ seeds | p |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in analysis.concentration_vs_score(records):
    lines.append(
      f"| {row['task']} | {row['runs']} | {_rho(row['rho_across'])} | {_p(row['p_across'])} | "
      f"{row['seeds']} | {_rho(row['rho_seeds'])} | {_p(row['p_seeds'])} |"
    )
  return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  folders = _run_folders(pathlib.Path(_WORKDIRS.value))
  if not folders:
    raise app.UsageError(
      f"no finished run (results.json with {RUN_FILE} or best/) below {_WORKDIRS.value}"
    )
  records = []
  for workdir in folders:
    record = run_record(workdir, include_embeddings=_EMBEDDINGS.value)
    # One row per noise scale too, labelled as in aggregate.py; `workdir` is where it is now.
    config = json.loads((workdir / "config.json").read_text())
    records.append(
      record
      | {"workdir": str(workdir), "method": optimizers.method_label(config["method"], config)}
    )
  if not _OUT.value:
    return
  out = pathlib.Path(_OUT.value)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(records) + "\n")
  out.with_suffix(".md").write_text(_table(records) + "\n" + _correlation_table(records))
  for task in sorted({record["task"] for record in records}):
    _plot(task, [r for r in records if r["task"] == task], out.parent / f"{out.name}_{task}.png")


if __name__ == "__main__":
  app.run(main)

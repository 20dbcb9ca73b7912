"""Synthetic finished runs for the study tools' tests: workdirs and packed-archive records."""

from __future__ import annotations

import json
import pathlib

METRIC = "validation/accuracy"


def run_name(task: str, method: str, seed: int, noise_scale=None, tag: str = "") -> str:
  """The run's name as a sweep gives it (`<task>/<method>[_ns<scale>][_<tag>]/seed<k>`)."""
  suffix = ("" if noise_scale is None else f"_ns{noise_scale:g}") + (f"_{tag}" if tag else "")
  return f"{task}/{method}{suffix}/seed{seed}"


def record(task, method, seed, score, noise_scale=None, tag="", metrics=(), sensitivity=None):
  """An archive record of a run whose best dev score is `score` and final one `score - 0.01`."""
  return {
    "run": run_name(task, method, seed, noise_scale, tag),
    "config": {"method": method, "tag": tag, "pats": {"noise_scale": noise_scale or 0.02}},
    "results": {
      "task": task,
      "method": method,
      "seed": seed,
      "best_metric": METRIC,
      "best": {"value": score, "step": 10, "metrics": {METRIC: score}},
      "final": {"step": 20, "metrics": {METRIC: score - 0.01}},
    },
    "metrics": list(metrics),
    "sensitivity": sensitivity,
  }


def write_run(root: pathlib.Path, *args, **kwargs) -> pathlib.Path:
  """Writes `record(*args, **kwargs)` as a workdir below `root` (as train.py would)."""
  run = record(*args, **kwargs)
  workdir = root / run["run"]
  workdir.mkdir(parents=True)
  (workdir / "results.json").write_text(json.dumps(run["results"]))
  (workdir / "config.json").write_text(json.dumps(run["config"]))
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in run["metrics"]))
  if run["sensitivity"] is not None:
    (workdir / "sensitivity.json").write_text(json.dumps(run["sensitivity"]))
  return workdir

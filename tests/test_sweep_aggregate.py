"""scripts/sweep.py (grid, skipping finished runs, resumable) and scripts/aggregate.py (tables)."""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _train_helpers import REPO_ROOT, cache_env
from scipy import stats

from pats_jax import testing

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import aggregate
import pats_stats
import sweep


def _sweep_config(**values):
  config = testing.load_config(REPO_ROOT / "configs/sweeps/tiny.py")
  for key, value in values.items():
    config[key] = value
  return config


def test_grid_multiplies_noise_scales_for_noise_methods_only():
  config = _sweep_config(
    methods=("plain", "pats", "uniform"),
    tasks=("rte", "mrpc"),
    seeds=(0, 1, 2),
    noise_scales=(0.01, 0.05),
  )
  runs = list(sweep.grid(config))
  assert len(runs) == 2 * 3 * (1 + 2 + 2)
  assert len({run.name for run in runs}) == len(runs)
  assert {run.noise_scale for run in runs if run.method == "plain"} == {None}
  assert "rte/pats_ns0.05/seed2" in {run.name for run in runs}
  assert [run.seed for run in runs[:3]] == [0, 1, 2]  # task-major: seeds innermost
  with config.unlocked():
    config.seed_major = True
  seed_major = list(sweep.grid(config))
  assert sorted(run.name for run in seed_major) == sorted(run.name for run in runs)
  assert {run.seed for run in seed_major[:10]} == {0}
  assert {run.task for run in seed_major[:10]} == {"rte", "mrpc"}
  with config.unlocked():
    config.method_major = True
  method_major = list(sweep.grid(config))
  assert sorted(run.name for run in method_major) == sorted(run.name for run in runs)
  assert [run.method for run in method_major[:6]] == ["plain"] * 6  # plain: 2 tasks x 3 seeds
  assert [(run.task, run.seed) for run in method_major[:3]] == [("rte", 0), ("mrpc", 0), ("rte", 1)]
  assert {run.method for run in method_major[6:18]} == {"pats"}


STUDY_SWEEPS = {
  "minilm_tune.py": (16, {"mrpc", "cola"}),
  "minilm_tune_options.py:0.03": (16, {"mrpc", "cola"}),
  "minilm_core.py:0.03": (50, {"rte", "mrpc", "stsb", "cola", "wnli"}),
  "minilm_baselines.py:0.03": (48, {"rte", "mrpc", "stsb", "cola"}),
  "minilm_sst2.py:0.03": (8, {"sst2"}),
}


@pytest.mark.parametrize("name", sorted(STUDY_SWEEPS))
def test_study_sweeps_load_and_pair_with_the_same_plain_runs(name):
  path, _, arg = name.partition(":")
  config = testing.load_config(REPO_ROOT / "configs/sweeps" / path, arg or None)
  runs = list(sweep.grid(config))
  size, tasks = STUDY_SWEEPS[name]
  assert len(runs) == size and {run.task for run in runs} == tasks
  assert config.config == "configs/study_minilm.py"
  if arg:  # The tuned scale names the PATS-noise workdirs, e.g. pats_ns0.03.
    assert all(run.noise_scale == 0.03 for run in runs if run.noise_scale is not None)
  if config.get("method_major"):  # Each method's runs in one block, seed-major inside it.
    first = runs[: len(runs) // len(config.methods)]
    assert {run.method for run in first} == {config.methods[0]}
    assert {run.seed for run in first[: len(first) // len(config.seeds)]} == {0}
  elif config.get("seed_major"):
    assert {run.seed for run in runs[: len(runs) // len(config.seeds)]} == {0}


def test_option_variants_add_runs_to_the_tuning_grid_only_for_pats():
  tune = {
    run.name for run in sweep.grid(testing.load_config(REPO_ROOT / "configs/sweeps/minilm_tune.py"))
  }
  options = testing.load_config(REPO_ROOT / "configs/sweeps/minilm_tune_options.py", "0.03")
  runs = list(sweep.grid(options))
  new = [run for run in runs if run.name not in tune]  # Plain and pats@0.03 are shared.
  assert sorted({run.variant for run in new}) == ["noemb", "rank"] and len(new) == 8
  assert "mrpc/pats_ns0.03_noemb/seed1" in {run.name for run in new}
  args = sweep.command(options, new[0], pathlib.Path("/w"))
  assert f"--config.tag={new[0].variant}" in args
  flag = {
    "noemb": "--config.pats.noise_on_embeddings=False",
    "rank": "--config.pats.normalize=rank",
  }
  assert flag[new[0].variant] in args


def test_study_sweeps_need_the_tuned_noise_scale():
  for arg in (None, "x", "-1", "+noemb"):
    with pytest.raises(ValueError, match=r"minilm_core.py:<lambda>"):
      testing.load_config(REPO_ROOT / "configs/sweeps/minilm_core.py", arg)
  known = r"unknown option\(s\) \['nope'\]; known: \['noemb', 'rank'\]"
  with pytest.raises(ValueError, match=known):
    testing.load_config(REPO_ROOT / "configs/sweeps/minilm_core.py", "0.03+nope")
  with pytest.raises(ValueError, match=r"takes the noise scale alone"):
    testing.load_config(REPO_ROOT / "configs/sweeps/minilm_tune_options.py", "0.03+rank")


def test_chosen_options_apply_to_every_core_and_baseline_run():
  for name in ("minilm_core.py", "minilm_baselines.py", "minilm_sst2.py"):
    config = testing.load_config(REPO_ROOT / "configs/sweeps" / name, "0.02+rank+noemb")
    assert {run.noise_scale for run in sweep.grid(config)} - {None} == {0.02}
    for run in sweep.grid(config):
      args = sweep.command(config, run, pathlib.Path("/w"))
      assert "--config.pats.normalize=rank" in args, (name, run)
      assert "--config.pats.noise_on_embeddings=False" in args, (name, run)
  plain = testing.load_config(REPO_ROOT / "configs/sweeps/minilm_core.py", "0.02")
  assert "pats" not in plain.overrides


def test_sweep_jobs_must_be_positive_and_share_the_gpu(tmp_path):
  with pytest.raises(ValueError, match="--jobs must be at least 1, got 0"):
    sweep.run_sweep(_sweep_config(), tmp_path, jobs=0)
  assert sweep.child_env("", jobs=4)["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  one = sweep.child_env("", jobs=1)
  assert one.get("XLA_PYTHON_CLIENT_PREALLOCATE") == os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")


def test_commands_and_skipping_finished_runs(tmp_path, capsys):
  config = _sweep_config()
  runs = list(sweep.grid(config))
  finished = tmp_path / runs[0].name
  finished.mkdir(parents=True)
  (finished / "results.json").write_text("{}")
  outcome = sweep.run_sweep(config, tmp_path, dry_run=True)
  assert outcome["skipped"] == [runs[0].name]
  assert outcome["pending"] == [run.name for run in runs[1:]]
  printed = capsys.readouterr().out.splitlines()
  assert len(printed) == len(runs) - 1
  pats_run = next(run for run in runs if run.method == "pats")
  args = sweep.command(config, pats_run, tmp_path / pats_run.name)
  assert args[1].endswith("train.py")
  assert (
    f"--config={REPO_ROOT / 'configs/tiny.py'}:task=rte,method=pats,model=tiny-bert,seed="
    f"{pats_run.seed}" in args
  )
  assert "--config.pats.noise_scale=0.05" in args and "--config.mesh.data=1" in args


def _write_run(root, task, method, seed, score, noise_scale=None, tag=""):
  suffix = ("" if noise_scale is None else f"_ns{noise_scale}") + (f"_{tag}" if tag else "")
  workdir = root / task / f"{method}{suffix}" / str(seed)
  workdir.mkdir(parents=True)
  metric = "validation/accuracy"
  (workdir / "results.json").write_text(
    json.dumps(
      {
        "task": task,
        "method": method,
        "seed": seed,
        "best_metric": metric,
        "best": {"value": score, "step": 10, "metrics": {metric: score}},
        "final": {"step": 20, "metrics": {metric: score - 0.01}},
      }
    )
  )
  (workdir / "config.json").write_text(
    json.dumps({"method": method, "tag": tag, "pats": {"noise_scale": noise_scale or 0.02}})
  )


def _summary_and_paired(runs, seeds):
  runs = [run for run in runs if run["seed"] in seeds]
  return aggregate.summarize(runs), aggregate.paired_differences(runs)


def test_aggregate_tables_and_paired_confidence_intervals(tmp_path):
  rng = np.random.default_rng(0)
  plain = rng.uniform(0.6, 0.7, size=5)
  pats = plain + rng.normal(0.02, 0.01, size=5)
  for seed in range(5):
    _write_run(tmp_path, "rte", "plain", seed, plain[seed])
    _write_run(tmp_path, "rte", "pats", seed, pats[seed], noise_scale=0.05)
  runs = aggregate.load_runs(tmp_path)
  summary = aggregate.summarize(runs)
  assert summary["plain", "rte"]["mean"] == pytest.approx(plain.mean())
  assert summary["pats@0.05", "rte"]["std"] == pytest.approx(pats.std(ddof=1))
  (row,) = aggregate.paired_differences(runs)
  diffs = pats - plain
  interval = stats.t.interval(0.95, 4, loc=diffs.mean(), scale=stats.sem(diffs))
  assert row["method"] == "pats@0.05" and row["n"] == 5
  assert (row["ci_low"], row["ci_high"]) == pytest.approx(interval)
  final = aggregate.summarize(aggregate.load_runs(tmp_path, which="final"))
  assert final["plain", "rte"]["mean"] == pytest.approx(plain.mean() - 0.01)
  # A named variant (a sweep's `variants`, config.tag) is a row of its own, paired too.
  for seed in range(5):
    _write_run(tmp_path, "rte", "pats", seed, pats[seed] + 0.01, noise_scale=0.05, tag="noemb")
  variant_rows = aggregate.paired_differences(aggregate.load_runs(tmp_path))
  by_method = {row["method"]: row for row in variant_rows}
  assert sorted(by_method) == ["pats@0.05", "pats@0.05+noemb"]
  assert by_method["pats@0.05+noemb"]["mean_diff"] == pytest.approx(diffs.mean() + 0.01)
  one_seed = aggregate.markdown(*_summary_and_paired(aggregate.load_runs(tmp_path), seeds={0}))
  assert "| pats@0.05+noemb | rte | 1 | " in one_seed and "no interval from one seed" in one_seed
  for seed in range(5):
    shutil.rmtree(tmp_path / "rte" / "pats_ns0.05_noemb" / str(seed))

  paths = aggregate.write_tables(runs, tmp_path / "out" / "table")
  text = paths[0].read_text()
  assert f"{100 * plain.mean():.2f} ± {100 * plain.std(ddof=1):.2f} (5)" in text
  assert "95% CI" in text
  with paths[1].open() as f:
    assert len(list(csv.DictReader(f))) == 2
  with paths[2].open() as f:
    (paired,) = list(csv.DictReader(f))
  assert math.isclose(float(paired["mean_diff"]), diffs.mean(), rel_tol=1e-9)


def test_aggregate_pairs_against_several_baselines(tmp_path):
  scores = {"plain": [0.60, 0.62, 0.61], "uniform": [0.63, 0.62, 0.60], "pats": [0.64, 0.65]}
  for method, values in scores.items():
    for seed, score in enumerate(values):
      _write_run(tmp_path, "rte", method, seed, score, noise_scale=0.01)
  runs = aggregate.load_runs(tmp_path)
  paths = aggregate.write_tables(runs, tmp_path / "t", baselines=["plain", "uniform@0.01"])
  with paths[2].open() as f:
    rows = {(row["method"], row["baseline"]): row for row in csv.DictReader(f)}
  # plain vs uniform appears once (uniform − plain), not again with the other sign.
  assert sorted(rows) == [
    ("pats@0.01", "plain"),
    ("pats@0.01", "uniform@0.01"),
    ("uniform@0.01", "plain"),
  ]
  versus_uniform = rows["pats@0.01", "uniform@0.01"]
  assert versus_uniform["n"] == "2"  # The seeds both have.
  assert float(versus_uniform["mean_diff"]) == pytest.approx((0.01 + 0.03) / 2)
  text = paths[0].read_text()
  assert "Paired difference vs plain" in text and "Paired difference vs uniform@0.01" in text
  assert paths[3].name == "t_paired.png" and paths[3].stat().st_size > 0
  with pytest.raises(ValueError, match=r"--baselines \['sage'\] have no runs"):
    aggregate.write_tables(runs, tmp_path / "t", baselines=["plain", "sage"])


def test_aggregate_rejects_foreign_results(tmp_path):
  (tmp_path / "x").mkdir()
  (tmp_path / "x" / "results.json").write_text(json.dumps({"task": "rte"}))
  with pytest.raises(ValueError, match="missing field"):
    aggregate.load_runs(tmp_path)


@pytest.mark.slow
def test_sweep_runs_archives_then_skips_and_aggregates(tmp_path):
  root, archive, out = tmp_path / "runs", tmp_path / "archive", tmp_path / "table"
  command = [
    sys.executable,
    str(REPO_ROOT / "scripts/sweep.py"),
    f"--sweep={REPO_ROOT / 'configs/sweeps/tiny.py'}",
    f"--root={root}",
    f"--archive={archive}",
    "--sweep.seeds=(0,)",
  ]
  # Both runs at once (--jobs 2), each with its own process, log and archive entry.
  first = subprocess.run(
    [*command, "--jobs=2"], env=cache_env(), capture_output=True, text=True, timeout=900
  )
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  assert "done: 2" in first.stdout
  assert not list(root.rglob("checkpoints")), "prune_checkpoints left checkpoints/ behind"
  assert len(list(root.rglob("best"))) == 2
  for name in ("rte/plain/seed0", "rte/pats_ns0.05/seed0"):
    stored = sorted(path.name for path in (archive / name).iterdir())
    assert stored == ["config.json", "metrics.jsonl", "results.json", "sensitivity.json"], name
    assert (root / name / "sensitivity.json").read_text() == (
      archive / name / "sensitivity.json"
    ).read_text()
  # The workdirs are lost (a new machine); the archive alone says the grid is finished.
  shutil.rmtree(root)
  second = subprocess.run(command, env=cache_env(), capture_output=True, text=True, timeout=300)
  assert "skipped: 2" in second.stdout and "done: 0" in second.stdout, second.stdout
  assert not root.exists() or not list(root.rglob("results.json"))
  result = subprocess.run(
    [
      sys.executable,
      str(REPO_ROOT / "scripts/aggregate.py"),
      f"--workdirs={archive}",
      f"--out={out}",
    ],
    capture_output=True,
    text=True,
    env=cache_env(),
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert "| plain |" in (tmp_path / "table.md").read_text()
  assert "pats@0.05" in (tmp_path / "table.md").read_text()
  # The sensitivity tables and plots come from the archived per-run files (no checkpoint).
  sensitivity = subprocess.run(
    [
      sys.executable,
      str(REPO_ROOT / "scripts/sensitivity.py"),
      f"--workdirs={archive}",
      f"--out={tmp_path / 'sens'}",
    ],
    capture_output=True,
    text=True,
    env=cache_env(),
    timeout=600,
  )
  assert sensitivity.returncode == 0, sensitivity.stderr[-2000:]
  table = (tmp_path / "sens.md").read_text()
  assert "| rte | pats@0.05 | 1 |" in table and "| rte | plain | 1 |" in table
  assert "| task | runs | ρ across | p | seeds | ρ seeds | p |" in table
  assert (tmp_path / "sens_rte.png").stat().st_size > 0
  # Asking for a measurement the archive cannot redo is a clear error, not a silent mix.
  other = subprocess.run(
    [
      sys.executable,
      str(REPO_ROOT / "scripts/sensitivity.py"),
      f"--workdirs={archive}",
      "--include_embeddings",
      "--out=",
    ],
    capture_output=True,
    text=True,
    env=cache_env(),
    timeout=300,
  )
  assert other.returncode != 0 and "include_embeddings=False" in other.stderr


def test_sweep_jobs_run_the_first_alone_then_several_at_a_time(tmp_path, monkeypatch):
  import threading
  import time

  config = _sweep_config(seeds=(0, 1, 2), sensitivity=False, prune_checkpoints=False)
  running, peak, order, lock = [0], [], [], threading.Lock()

  def fake_train(args, **kwargs):
    workdir = pathlib.Path(next(a for a in args if a.startswith("--workdir="))[10:])
    with lock:
      running[0] += 1
      order.append((workdir.relative_to(tmp_path).as_posix(), running[0]))
    time.sleep(0.5)
    (workdir / "results.json").write_text("{}")
    with lock:
      peak.append(running[0])
      running[0] -= 1
    return 0

  monkeypatch.setattr(sweep.subprocess, "call", fake_train)
  outcome = sweep.run_sweep(config, tmp_path, jobs=3)
  names = [run.name for run in sweep.grid(config)]
  assert outcome["done"] == names and not outcome["failed"]
  # The first runs alone (it fills the compilation cache): the next start (any of the pool's
  # first three, in whatever order the threads get there) comes after it ends.
  assert order[0] == (names[0], 1) and order[1][1] == 1
  assert max(peak) == 3  # Then 3 at a time.


def test_sweep_set_adds_overrides_to_every_run_and_rejects_bad_ones(tmp_path, capsys):
  config = _sweep_config()
  sweep.run_sweep(config, tmp_path, dry_run=True, extra=["data.bucket_multiple=128"])
  printed = capsys.readouterr().out.splitlines()
  assert len(printed) == len(list(sweep.grid(config)))
  assert all(line.endswith("--config.data.bucket_multiple=128") for line in printed)
  for bad in ("data.bucket_multiple", "=3", "--config.x=1"):
    with pytest.raises(ValueError, match="--set takes KEY=VALUE"):
      sweep.run_sweep(config, tmp_path, dry_run=True, extra=[bad])


def test_average_column_over_complete_seeds_without_wnli(tmp_path):
  scores = {"rte": 0.6, "mrpc": 0.8, "wnli": 0.5}
  for seed in (0, 1):
    for task, score in scores.items():
      _write_run(tmp_path, task, "plain", seed, score + seed / 100)
      if not (task == "mrpc" and seed == 1):  # PATS lacks MRPC for seed 1: no average there.
        _write_run(tmp_path, task, "pats", seed, score + 0.02, noise_scale=0.05)
  runs = aggregate.with_average(aggregate.load_runs(tmp_path))
  summary = aggregate.summarize(runs)
  assert summary["plain", "average"] == pytest.approx({"mean": 0.705, "std": 0.01 / 2**0.5, "n": 2})
  assert summary["pats@0.05", "average"]["n"] == 1
  paired = {(r["method"], r["task"]): r for r in aggregate.paired_differences(runs)}
  assert paired["pats@0.05", "average"]["mean_diff"] == pytest.approx(0.02)
  table = aggregate.markdown(summary, list(paired.values()))
  assert table.splitlines()[0] == "| method | mrpc | rte | wnli | average |"
  chosen = aggregate.with_average(aggregate.load_runs(tmp_path), ["rte", "wnli"])
  assert aggregate.summarize(chosen)["plain", "average"]["mean"] == pytest.approx(0.555)
  with pytest.raises(ValueError, match=r"--average_tasks names tasks without runs: \['cola'\]"):
    aggregate.with_average(aggregate.load_runs(tmp_path), ["cola", "rte"])


def test_pats_stats_summarise_logged_importance_per_method(tmp_path):
  _write_run(tmp_path, "rte", "plain", 0, 0.6)
  for seed, below in ((0, (0.99, 0.97)), (1, (0.98,))):
    _write_run(tmp_path, "rte", "pats", seed, 0.6, noise_scale=0.05)
    lines = [
      {"step": 10 * i, "pats/r_below_0.1": share, "pats/r_mean": 0.01}
      for i, share in enumerate(below)
    ]
    lines.append({"step": 99, "eval": {"validation/accuracy": 0.6}})
    (tmp_path / "rte/pats_ns0.05" / str(seed) / "metrics.jsonl").write_text(
      "\n".join(json.dumps(line) for line in lines)
    )
  table = pats_stats.collect(tmp_path)
  assert list(table) == [("pats@0.05", "rte")]  # Plain logs no pats/* statistics.
  cell = table["pats@0.05", "rte"]
  assert len(cell["runs"]) == 2 and sorted(cell["pats/r_below_0.1"]) == [0.97, 0.98, 0.99]

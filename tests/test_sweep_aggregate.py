"""The study tools: sweep runner, packed archive, tables, aggregate, PATS statistics, report."""

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
from _study_runs import record, write_run
from _train_helpers import REPO_ROOT, cache_env, load_config
from scipy import stats

from pats_jax.training import optimizers
from scripts.study import aggregate, archive, pats_stats, report, sensitivity, sweep, tables

TRAIN_CONFIGS = {"configs/study/minilm.py"}  # The study's protocol: a train.py config.
SWEEP_FILES = sorted(
  path.relative_to(REPO_ROOT).as_posix()
  for folder in ("configs/sweeps", "configs/study")
  for path in (REPO_ROOT / folder).glob("*.py")
  if path.name != "__init__.py" and path.relative_to(REPO_ROOT).as_posix() not in TRAIN_CONFIGS
)
TUNED = "0.01"  # A noise scale for the sweeps that take the tuned one.


def _load_sweep(path: str, arg: str | None = None):
  try:
    return load_config(REPO_ROOT / path, arg)
  except ValueError as error:  # A study sweep that needs the tuned noise scale.
    assert "<lambda>" in str(error), error
    return load_config(REPO_ROOT / path, TUNED)


def _sweep_config(**values):
  config = load_config(REPO_ROOT / "configs/sweeps/tiny.py")
  for key, value in values.items():
    config[key] = value
  return config


def _flat_keys(tree, prefix=""):
  for key, value in tree.items():
    if hasattr(value, "items"):
      yield from _flat_keys(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}"


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


@pytest.mark.parametrize("path", SWEEP_FILES)
def test_every_sweep_file_expands_to_valid_distinct_runs(path):
  config = _load_sweep(path)
  runs = list(sweep.grid(config))
  assert runs, path
  assert len({run.name for run in runs}) == len(runs), "two runs share a workdir"
  assert len(set(config.seeds)) == len(config.seeds), "a seed is listed twice"
  assert {run.task for run in runs} == set(config.tasks)
  overrides = set(_flat_keys(config.overrides))
  for variant in config.get("variants", {}).values():
    overrides |= set(_flat_keys(variant))
  for task, method in sorted({(run.task, run.method) for run in runs}):
    arg = f"task={task},method={method},model={config.model},seed={config.seeds[0]}"
    train_config = load_config(REPO_ROOT / config.config, arg)
    assert (train_config.task, train_config.method) == (task, method)
    known = set(_flat_keys(train_config))
    assert overrides <= known, f"{path}: unknown overrides {sorted(overrides - known)}"
  noisy = [run for run in runs if run.method in optimizers.PATS_VARIANTS]
  assert all(run.noise_scale in config.noise_scales for run in noisy)
  if config.get("method_major"):  # Each method's runs in one block, in the listed order.
    assert [run.method for run in runs[: len(runs) // len(config.methods)]] == [
      config.methods[0]
    ] * (len(runs) // len(config.methods))
  elif config.get("seed_major"):
    assert {run.seed for run in runs[: len(runs) // len(config.seeds)]} == {config.seeds[0]}


def test_study_comparison_grids_pair_with_the_core_plain_runs():
  """Baselines and SST-2 run at the core's protocol and noise scale; the baselines' seeds and
  tasks are the core's, so each baseline run has a plain run of the same task and seed."""
  core = _load_sweep("configs/study/core.py")
  core_runs = {run.name for run in sweep.grid(core)}
  for path in ("configs/study/baselines.py", "configs/study/sst2.py"):
    config = _load_sweep(path)
    assert (config.config, config.model) == (core.config, core.model)
    assert tuple(config.noise_scales) == tuple(core.noise_scales)
    runs = list(sweep.grid(config))
    assert not {run.name for run in runs} & core_runs, "a run would be archived twice"
  baselines = list(sweep.grid(_load_sweep("configs/study/baselines.py")))
  assert "plain" not in {run.method for run in baselines}
  for run in baselines:
    assert f"{run.task}/plain/seed{run.seed}" in core_runs, run.name


def test_option_variants_add_pats_runs_to_the_tuning_grid():
  tune = {run.name for run in sweep.grid(_load_sweep("configs/study/tune.py"))}
  options = load_config(REPO_ROOT / "configs/study/tune_options.py", "0.03")
  from configs.study import core

  new = [run for run in sweep.grid(options) if run.name not in tune]  # Plain and base shared.
  assert new and {run.variant for run in new} == set(core.OPTIONS)
  assert {run.method for run in new} == {"pats"} and {run.noise_scale for run in new} == {0.03}
  flag = {
    "noemb": "--config.pats.noise_on_embeddings=False",
    "rank": "--config.pats.normalize=rank",
  }
  for run in new:
    args = sweep.command(options, run, pathlib.Path("/w"))
    assert f"--config.tag={run.variant}" in args and flag[run.variant] in args


def test_study_sweeps_need_the_tuned_noise_scale():
  for arg in (None, "x", "-1", "+noemb"):
    with pytest.raises(ValueError, match=r"configs/study/core.py:<lambda>"):
      load_config(REPO_ROOT / "configs/study/core.py", arg)
  known = r"unknown option\(s\) \['nope'\]; known: \['noemb', 'rank'\]"
  with pytest.raises(ValueError, match=known):
    load_config(REPO_ROOT / "configs/study/core.py", "0.03+nope")
  with pytest.raises(ValueError, match=r"takes the noise scale alone"):
    load_config(REPO_ROOT / "configs/study/tune_options.py", "0.03+rank")


def test_chosen_options_apply_to_every_core_and_baseline_run():
  for name in ("core.py", "baselines.py", "sst2.py"):
    config = load_config(REPO_ROOT / "configs/study" / name, "0.02+rank+noemb")
    assert {run.noise_scale for run in sweep.grid(config)} - {None} == {0.02}
    for run in sweep.grid(config):
      args = sweep.command(config, run, pathlib.Path("/w"))
      assert "--config.pats.normalize=rank" in args, (name, run)
      assert "--config.pats.noise_on_embeddings=False" in args, (name, run)
  plain = load_config(REPO_ROOT / "configs/study/core.py", "0.02")
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


def test_runs_in_the_archive_count_as_finished(tmp_path, capsys):
  config = _sweep_config()
  runs = list(sweep.grid(config))
  packed = tmp_path / "runs.jsonl"
  archive.append(
    packed, record("rte", runs[-1].method, runs[-1].seed, 0.6) | {"run": runs[-1].name}
  )
  outcome = sweep.run_sweep(config, tmp_path / "root", dry_run=True, archive=packed)
  assert outcome["skipped"] == [runs[-1].name]
  assert outcome["pending"] == [run.name for run in runs[:-1]]
  with pytest.raises(ValueError, match=r"--archive takes a \.jsonl file"):
    sweep.run_sweep(config, tmp_path / "root", dry_run=True, archive=tmp_path / "folder")


def test_archive_packs_a_workdir_without_machine_paths(tmp_path):
  workdir = write_run(
    tmp_path / "root",
    "rte",
    "pats",
    0,
    0.6,
    noise_scale=0.05,
    metrics=[{"step": 1, "loss": 0.5}],
    sensitivity={"workdir": str(tmp_path), "stats": {"gini": 0.5}},
  )
  config = json.loads((workdir / "config.json").read_text())
  config["data"] = {"data_dir": str(tmp_path / "glue"), "source": "auto"}
  (workdir / "config.json").write_text(json.dumps(config))
  packed = archive.pack(workdir, "rte/pats_ns0.05/seed0")
  assert packed["metrics"] == [{"step": 1, "loss": 0.5}]
  assert packed["sensitivity"] == {"stats": {"gini": 0.5}}
  assert packed["config"]["data"] == {"data_dir": "", "source": "auto"}
  assert str(tmp_path) not in json.dumps(packed)
  path = tmp_path / "a" / "runs.jsonl"
  archive.append(path, packed)
  archive.append(path, record("rte", "plain", 0, 0.6))
  assert archive.finished(path) == {"rte/pats_ns0.05/seed0", "rte/plain/seed0"}
  # A sweep root and its archive load as the same records.
  assert archive.load([tmp_path / "root"])[0] == archive.read(path)[0] | {"run": packed["run"]}
  with path.open("a") as f:
    f.write("{not json\n")
  with pytest.raises(ValueError, match=r"runs.jsonl:3: not a JSON line"):
    archive.read(path)
  with pytest.raises(FileNotFoundError, match="no such archive"):
    archive.load([tmp_path / "missing.jsonl"])


def _rows(records, **kwargs):
  return tables.score_rows(records, **kwargs)


def test_tables_summarise_and_pair_with_confidence_intervals(tmp_path):
  rng = np.random.default_rng(0)
  plain = rng.uniform(0.6, 0.7, size=5)
  pats = plain + rng.normal(0.02, 0.01, size=5)
  records = [record("rte", "plain", seed, plain[seed]) for seed in range(5)]
  records += [record("rte", "pats", seed, pats[seed], noise_scale=0.05) for seed in range(5)]
  rows = _rows(records)
  summary = tables.summarize(rows)
  assert summary["plain", "rte"]["mean"] == pytest.approx(plain.mean())
  assert summary["pats@0.05", "rte"]["std"] == pytest.approx(pats.std(ddof=1))
  (row,) = tables.paired_differences(rows)
  diffs = pats - plain
  interval = stats.t.interval(0.95, 4, loc=diffs.mean(), scale=stats.sem(diffs))
  assert row["method"] == "pats@0.05" and row["n"] == 5
  assert (row["ci_low"], row["ci_high"]) == pytest.approx(interval)
  final = tables.summarize(_rows(records, which="final"))
  assert final["plain", "rte"]["mean"] == pytest.approx(plain.mean() - 0.01)
  # A named variant (a sweep's `variants`, config.tag) is a row of its own, paired too.
  variant = [
    record("rte", "pats", seed, pats[seed] + 0.01, noise_scale=0.05, tag="noemb")
    for seed in range(5)
  ]
  by_method = {row["method"]: row for row in tables.paired_differences(_rows(records + variant))}
  assert sorted(by_method) == ["pats@0.05", "pats@0.05+noemb"]
  assert by_method["pats@0.05+noemb"]["mean_diff"] == pytest.approx(diffs.mean() + 0.01)
  one_seed = [r for r in _rows(records + variant) if r["seed"] == 0]
  text = tables.markdown(tables.summarize(one_seed), tables.paired_differences(one_seed))
  assert "| pats@0.05+noemb | rte | 1 | " in text and "no interval from one seed" in text

  paths = tables.write_tables(rows, tmp_path / "out" / "table", plot=False)
  text = paths[0].read_text()
  assert f"{100 * plain.mean():.2f} ± {100 * plain.std(ddof=1):.2f} (5)" in text
  assert "95% CI" in text and f"0: {100 * plain[0]:.2f} / 1: {100 * plain[1]:.2f}" in text
  with paths[1].open() as f:
    assert len(list(csv.DictReader(f))) == 2
  with paths[2].open() as f:
    (paired,) = list(csv.DictReader(f))
  assert math.isclose(float(paired["mean_diff"]), diffs.mean(), rel_tol=1e-9)


def test_tables_pair_against_several_baselines(tmp_path):
  scores = {"plain": [0.60, 0.62, 0.61], "uniform": [0.63, 0.62, 0.60], "pats": [0.64, 0.65]}
  records = [
    record("rte", method, seed, score, noise_scale=0.01)
    for method, values in scores.items()
    for seed, score in enumerate(values)
  ]
  paths = tables.write_tables(_rows(records), tmp_path / "t", baselines=["plain", "uniform@0.01"])
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
  with pytest.raises(ValueError, match=r"baselines \['sage'\] have no runs"):
    tables.write_tables(_rows(records), tmp_path / "t", baselines=["plain", "sage"])


def test_tables_reject_foreign_results():
  with pytest.raises(ValueError, match="run x: missing field"):
    tables.score_rows([{"run": "x", "results": {"task": "rte"}}])


def test_average_column_over_complete_seeds_without_wnli():
  scores = {"rte": 0.6, "mrpc": 0.8, "wnli": 0.5}
  records = []
  for seed in (0, 1):
    for task, score in scores.items():
      records.append(record(task, "plain", seed, score + seed / 100))
      if not (task == "mrpc" and seed == 1):  # PATS lacks MRPC for seed 1: no average there.
        records.append(record(task, "pats", seed, score + 0.02, noise_scale=0.05))
  rows = tables.with_average(_rows(records))
  summary = tables.summarize(rows)
  assert summary["plain", "average"] == pytest.approx({"mean": 0.705, "std": 0.01 / 2**0.5, "n": 2})
  assert summary["pats@0.05", "average"]["n"] == 1
  paired = {(r["method"], r["task"]): r for r in tables.paired_differences(rows)}
  assert paired["pats@0.05", "average"]["mean_diff"] == pytest.approx(0.02)
  table = tables.markdown(summary, list(paired.values()))
  assert table.splitlines()[0] == "| method | mrpc | rte | wnli | average |"
  chosen = tables.with_average(_rows(records), ["rte", "wnli"])
  assert tables.summarize(chosen)["plain", "average"]["mean"] == pytest.approx(0.555)
  with pytest.raises(ValueError, match=r"averaged tasks without runs: \['cola'\]"):
    tables.with_average(_rows(records), ["cola", "rte"])


def test_aggregate_reads_roots_and_archives_alike(tmp_path, capsys):
  root, packed = tmp_path / "root", tmp_path / "runs.jsonl"
  for seed in range(3):
    write_run(root, "rte", "plain", seed, 0.6 + seed / 100)
    archive.append(packed, record("rte", "pats", seed, 0.62 + seed / 100, noise_scale=0.05))
  aggregate.main(["--runs", str(root), str(packed), "--out", str(tmp_path / "t")])
  assert "| pats@0.05 | rte | 3 | +2.00 [+2.00, +2.00] |" in capsys.readouterr().out
  assert (tmp_path / "t_paired.png").stat().st_size > 0
  with pytest.raises(SystemExit):
    aggregate.main(["--runs", str(root), "--out", str(tmp_path / "u"), "--baselines", "sage"])
  assert "baselines ['sage'] have no runs" in capsys.readouterr().err


def test_pats_stats_summarise_logged_importance_per_method(tmp_path, capsys):
  records = [record("rte", "plain", 0, 0.6, metrics=[{"step": 10, "loss": 0.5}])]
  for seed, below in ((0, (0.99, 0.97)), (1, (0.98,))):
    logged = [
      {"step": 10 * i, "pats/r_below_0.1": share, "pats/r_mean": 0.01}
      for i, share in enumerate(below)
    ]
    logged.append({"step": 99, "eval": {"validation/accuracy": 0.6}})
    records.append(record("rte", "pats", seed, 0.6, noise_scale=0.05, metrics=logged))
  table = pats_stats.collect(records)
  assert list(table) == [("pats@0.05", "rte")]  # Plain logs no pats/* statistics.
  cell = table["pats@0.05", "rte"]
  assert len(cell["runs"]) == 2 and sorted(cell["pats/r_below_0.1"]) == [0.97, 0.98, 0.99]
  packed = tmp_path / "runs.jsonl"
  for one in records:
    archive.append(packed, one)
  pats_stats.main(["--runs", str(packed)])
  assert "| pats@0.05 | rte | 2 | 0.970-0.990 | 0.0100 |" in capsys.readouterr().out


def _sensitivity(task, method, seed, gini, score):
  bins = np.linspace(-16.0, 0.0, 129)
  histogram = np.zeros(128, int)
  histogram[60 + seed : 70 + seed] = 10
  return {
    "task": task,
    "method": method,
    "seed": seed,
    "stats": {"gini": gini, "top1_share": gini / 5, "top10_share": gini / 2},
    "histogram": histogram.tolist(),
    "log10_bins": bins.tolist(),
    "final_score": score,
    "include_embeddings": False,
  }


def _study_archive(folder: pathlib.Path) -> None:
  """A small tuning and core archive, with sensitivity and logged PATS statistics."""
  logged = [{"step": 10, "pats/r_below_0.1": 0.99, "pats/r_mean": 0.006}]
  for name, tasks, scales in (
    ("runs_tune.jsonl", ("cola", "mrpc"), (0.01, 0.1)),
    ("runs_core.jsonl", ("mrpc", "rte", "wnli"), (0.01,)),
  ):
    for task in tasks:
      for seed in range(3):
        plain = 0.6 + seed / 100
        archive.append(
          folder / name,
          record(
            task, "plain", seed, plain, sensitivity=_sensitivity(task, "plain", seed, 0.6, plain)
          ),
        )
        for scale in scales:
          score = plain + 0.01 - scale
          sens = _sensitivity(task, "pats", seed, 0.6 - scale, score)
          pats = record(task, "pats", seed, score, scale, metrics=logged, sensitivity=sens)
          archive.append(folder / name, pats)


def test_report_builds_every_table_from_the_archives(tmp_path):
  _study_archive(tmp_path)
  paths = {path.name for path in report.build(tmp_path, tmp_path / "out")}
  assert {
    "study_tune.md",
    "study_tune_paired.png",
    "choice.txt",
    "pats_stats_tune.md",
    "sensitivity_tune.md",
    "sensitivity_tune_cola.png",
    "study.csv",
    "study_paired.csv",
    "sensitivity_study_rte.png",
  } <= paths
  # Rule 1 on the tuning archive: λ = 0.01 is above plain, λ = 0.1 below.
  assert (tmp_path / "out/choice.txt").read_text().splitlines()[-1] == "0.01"
  study = (tmp_path / "out/study.md").read_text()
  assert study.splitlines()[0] == "| method | mrpc | rte | wnli | average |"  # WNLI apart.
  assert "| pats@0.01 | average | 3 | +0.00 [+0.00, +0.00] |" in study
  assert (
    "| rte | pats@0.01 | 3 | 0.5900 ± 0.0000 |"
    in (tmp_path / "out/sensitivity_study.md").read_text()
  )


def test_committed_tables_rebuild_from_the_committed_archive(tmp_path):
  """Every committed table of the study equals what its packed archive gives now."""
  folder = REPO_ROOT / "docs/glue_minilm"
  report.build(folder, tmp_path, plots=False)
  rebuilt = sorted(path.name for path in tmp_path.iterdir())
  assert "study.csv" in rebuilt and "study_tune.csv" in rebuilt
  for name in rebuilt:
    assert (tmp_path / name).read_text() == (folder / name).read_text(), name


@pytest.mark.slow
def test_sweep_archives_then_skips_and_the_tools_read_the_archive(tmp_path):
  root, packed, out = tmp_path / "runs", tmp_path / "archive" / "runs_core.jsonl", tmp_path / "out"

  def run(*args, timeout=900):
    done = subprocess.run(
      [sys.executable, "-m", *args],
      cwd=REPO_ROOT,
      env=cache_env(),
      capture_output=True,
      text=True,
      timeout=timeout,
    )
    return done

  command = (
    "scripts.study.sweep",
    "--sweep=configs/sweeps/tiny.py",
    f"--root={root}",
    f"--archive={packed}",
    "--sweep.seeds=(0,)",
  )
  # Both runs at once (--jobs 2), each with its own process, log and archive line.
  first = run(*command, "--jobs=2")
  assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
  assert "done: 2" in first.stdout
  assert not list(root.rglob("checkpoints")), "prune_checkpoints left checkpoints/ behind"
  assert len(list(root.rglob("best"))) == 2
  records = {one["run"]: one for one in archive.read(packed)}
  assert sorted(records) == ["rte/pats_ns0.05/seed0", "rte/plain/seed0"]
  for name, one in records.items():
    stored = json.loads((root / name / "sensitivity.json").read_text())
    assert one["sensitivity"]["stats"] == stored["stats"], name
    assert one["metrics"] and one["config"]["task"] == "rte"
  assert str(tmp_path) not in packed.read_text()
  # The workdirs are lost (a new machine); the archive alone says the grid is finished.
  shutil.rmtree(root)
  second = run(*command, timeout=300)
  assert "skipped: 2" in second.stdout and "done: 0" in second.stdout, second.stdout
  assert not root.exists() or not list(root.rglob("results.json"))
  built = run("scripts.study.report", f"--archive={packed.parent}", f"--out={out}", timeout=300)
  assert built.returncode == 0, built.stderr[-2000:]
  assert "| plain |" in (out / "study.md").read_text()
  assert "| rte | pats@0.05 | 1 |" in (out / "sensitivity_study.md").read_text()
  assert (out / "sensitivity_study_rte.png").stat().st_size > 0
  # Asking for a measurement the archive cannot redo is a clear error, not a silent mix.
  other = run(
    "scripts.study.sensitivity", f"--runs={packed}", "--include_embeddings", f"--out={out}/x"
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


def test_sensitivity_tables_need_matching_measurements():
  one = record("rte", "plain", 0, 0.6, sensitivity=_sensitivity("rte", "plain", 0, 0.6, 0.59))
  assert sensitivity.per_run([one], include_embeddings=False)[0]["method"] == "plain"
  with pytest.raises(ValueError, match="an archive cannot measure it again"):
    sensitivity.per_run([one], include_embeddings=True)


@pytest.mark.parametrize(
  ("args", "message"),
  [
    (["--sweep=configs/study/core.py"], "needs PATS's tuned noise scale"),
    (["--sweep=configs/sweeps/tiny.py", "--sweep.nokey=3"], "has no field 'nokey'"),
    (["--sweep=configs/sweeps/tiny.py", "--archive=runs"], "--archive takes a .jsonl file"),
  ],
)
def test_sweep_mistakes_are_one_message(tmp_path, args, message):
  done = subprocess.run(
    [sys.executable, "-m", "scripts.study.sweep", *args, f"--root={tmp_path}", "--dry_run"],
    cwd=REPO_ROOT,
    env=cache_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode != 0 and message in done.stderr, done.stderr
  assert "Traceback" not in done.stderr

"""scripts.study.choose: the study's written choice rules (noise scale, then options)."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
from _study_runs import record, write_run
from _train_helpers import REPO_ROOT  # Also puts the repository root on sys.path.

from scripts.study import archive, choose, tables

# (task, seed) -> plain's final score; PATS at each λ adds the offsets below.
PLAIN = {("mrpc", 0): 0.80, ("mrpc", 1): 0.82, ("cola", 0): 0.30, ("cola", 1): 0.34}
OFFSETS = {
  0.01: {"mrpc": 0.004, "cola": 0.000},  # mean over tasks +0.002
  0.03: {"mrpc": -0.004, "cola": 0.012},  # +0.004: the best average, though worse on MRPC
  0.1: {"mrpc": -0.020, "cola": -0.010},
}


def _tuning_grid(*, drop=()) -> list[dict]:
  """Records of the tuning grid; `record`'s final score is its best one minus 0.01."""
  records = []
  for (task, seed), score in PLAIN.items():
    records.append(record(task, "plain", seed, score + 0.01))
    for scale, offsets in OFFSETS.items():
      if (scale, task) not in drop:
        records.append(record(task, "pats", seed, score + offsets[task] + 0.01, scale))
  return records


def _final(records):
  return tables.score_rows(records, which="final")


def test_noise_scale_rule_averages_the_paired_difference_over_tasks():
  scale, scores = choose.choose_noise_scale(_final(_tuning_grid()))
  assert scale == 0.03
  assert scores == pytest.approx({0.01: 0.002, 0.03: 0.004, 0.1: -0.015})


def test_noise_scale_rule_needs_every_task():
  with pytest.raises(ValueError, match=r"pats@0.1 has no runs paired with plain on \['cola'\]"):
    choose.choose_noise_scale(_final(_tuning_grid(drop={(0.1, "cola")})))


def test_option_is_taken_only_if_it_helps_on_every_task():
  records = _tuning_grid()
  for (task, seed), score in PLAIN.items():
    base = score + OFFSETS[0.03][task]
    # noemb helps on both tasks; rank helps MRPC a lot but hurts CoLA.
    records.append(record(task, "pats", seed, base + 0.011, 0.03, tag="noemb"))
    rank = base + (0.05 if task == "mrpc" else -0.001)
    records.append(record(task, "pats", seed, rank + 0.01, 0.03, tag="rank"))
  chosen, details = choose.choose_options(_final(records), 0.03)
  assert chosen == ["noemb"]
  assert details["noemb"] == pytest.approx({"mrpc": 0.001, "cola": 0.001})
  assert details["rank"] == pytest.approx({"mrpc": 0.05, "cola": -0.001})


def test_script_prints_the_core_sweeps_argument(tmp_path: pathlib.Path, capsys):
  packed = tmp_path / "runs_tune.jsonl"
  for one in _tuning_grid():
    archive.append(packed, one)
  root = tmp_path / "root"  # rank runs on MRPC only so far, in a sweep root: pending.
  for (task, seed), score in PLAIN.items():
    if task == "mrpc":
      write_run(root, task, "pats", seed, score + 0.1, 0.03, tag="rank")
  choose.main(["--runs", str(packed), str(root)])
  lines = capsys.readouterr().out.splitlines()
  assert "d(pats@0.03) = +0.40 (mean paired difference to plain, x100)" in lines
  assert "option noemb: pending (no runs on every task at pats@0.03)" in lines
  assert "option rank: pending (no runs on every task at pats@0.03)" in lines
  assert lines[-1] == "0.03"
  choose.main(["--runs", str(packed), "--quiet"])
  assert capsys.readouterr().out == "0.03\n"


def test_script_names_the_missing_runs(tmp_path: pathlib.Path, capsys):
  packed = tmp_path / "runs_tune.jsonl"
  for one in _tuning_grid(drop={(0.1, "cola")}):
    archive.append(packed, one)
  with pytest.raises(SystemExit):
    choose.main(["--runs", str(packed)])
  error = capsys.readouterr().err
  assert "pats@0.1 has no runs paired with plain on ['cola']" in error
  assert "Traceback" not in error


def test_run_study_script_passes_the_choice_to_every_comparison_grid(tmp_path: pathlib.Path):
  """scripts/study/run_study.sh with a stand-in Python that logs each call and answers the
  choice rules with `0.02+noemb`: the grids run in order, each with its own archive."""
  log = tmp_path / "calls.log"
  fake = tmp_path / "python"
  fake.write_text(
    "#!/usr/bin/env bash\n"
    f'echo "$*" >> {log}\n'
    'if [[ "$2" == scripts.study.choose ]]; then echo 0.02+noemb; fi\n'
  )
  fake.chmod(0o755)
  env = dict(os.environ, PYTHON=str(fake), ARCHIVES="out", ROOT="work/study", SEEDS="0,1")
  done = subprocess.run(
    ["bash", str(REPO_ROOT / "scripts/study/run_study.sh")],
    env=env,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert done.returncode == 0, done.stderr
  calls = log.read_text().splitlines()
  sweep_calls = [call for call in calls if call.startswith("-m scripts.study.sweep")]
  sweeps = [call.split()[3] for call in sweep_calls]
  assert sweeps == [
    "configs/study/tune.py",
    "configs/study/tune_options.py:0.02+noemb",
    "configs/study/core.py:0.02+noemb",
    "configs/study/baselines.py:0.02+noemb",
    "configs/study/sst2.py:0.02+noemb",
  ]
  archives = [call.split("--archive ")[1].split()[0] for call in sweep_calls]
  assert archives == [
    "out/runs_tune.jsonl",
    "out/runs_tune.jsonl",
    "out/runs_core.jsonl",
    "out/runs_baselines.jsonl",
    "out/runs_sst2.jsonl",
  ]
  assert sum("--sweep.seeds=(0,1,)" in call for call in calls) == 2  # Baselines and SST-2.
  assert calls[-1] == "-m scripts.study.report --archive out --out out"

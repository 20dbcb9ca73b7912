"""train.py on a workdir that holds another run, or that another train.py is writing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from _train_helpers import cache_env, train_command

# configs/tiny.py (method=pats) with a checkpoint every 2 steps and no test predictions.
RUN = {
  "checkpoint_every_steps": 2,
  "eval_every_steps": 4,
  "mesh__data": 1,
  "write_test_predictions": False,
}


def _tree(path):
  """Every file under `path` with its size and modification time."""
  return {
    str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
    for p in sorted(path.rglob("*"))
    if p.is_file()
  }


def _history(workdir):
  lines = (workdir / "config_history.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_changed_config_rerun_stops_with_exit_2_and_moves_nothing(tmp_path):
  workdir, env = tmp_path / "run", cache_env()
  subprocess.run(
    train_command(workdir, **RUN, max_steps=4), env=env, check=True, capture_output=True
  )
  before = _tree(workdir / "checkpoints")
  assert {name.split("/")[0] for name in before} == {"2", "4"}

  changed = train_command(
    workdir, "configs/tiny.py:method=pats,model=tiny-roberta", **RUN, max_steps=6, batch_size=4
  )
  rerun = subprocess.run(changed, env=env, capture_output=True, text=True)
  assert rerun.returncode == 2, rerun.stderr[-3000:]
  assert "Traceback" not in rerun.stderr
  assert "holds a run with a different config" in rerun.stderr
  assert "  batch_size: saved 8, new 4" in rerun.stderr
  assert "  model: saved 'tiny-bert', new 'tiny-roberta'" in rerun.stderr
  assert "--allow_config_change=batch_size,model" in rerun.stderr
  assert _tree(workdir / "checkpoints") == before
  assert not (workdir / "checkpoints_corrupt").exists()
  assert not (workdir / "run.lock").exists()

  # With the change allowed, the checkpoints still do not fit the other model: refused too.
  allowed = subprocess.run(
    [*changed, "--allow_config_change=batch_size,model"], env=env, capture_output=True, text=True
  )
  assert allowed.returncode == 2, allowed.stderr[-3000:]
  assert "checkpoint 4" in allowed.stderr and "does not fit" in allowed.stderr
  assert _tree(workdir / "checkpoints") == before
  assert json.loads((workdir / "config.json").read_text())["model"] == "tiny-bert"

  # The original command (a later max_steps may change) resumes from the newest checkpoint.
  subprocess.run(
    train_command(workdir, **RUN, max_steps=6), env=env, check=True, capture_output=True
  )
  assert [record["resumed_from"] for record in _history(workdir)] == [None, 4]
  assert _history(workdir)[-1]["changed"] == {"max_steps": {"saved": 4, "new": 6}}
  assert json.loads((workdir / "results.json").read_text())["final"]["step"] == 6


@pytest.mark.slow
def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
  workdir, env = tmp_path / "run", cache_env()
  command = train_command(
    workdir, **{**RUN, "checkpoint_every_steps": 0, "eval_every_steps": 0, "num_epochs": 5000}
  )
  log = (tmp_path / "first.log").open("w")
  first = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
  metrics = workdir / "metrics.jsonl"
  deadline = time.monotonic() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    assert time.monotonic() < deadline, "timed out waiting for the first train.py"
    time.sleep(0.2)
  holder = json.loads((workdir / "run.lock").read_text())
  assert holder["pid"] == first.pid

  second = subprocess.run(command, env=env, capture_output=True, text=True)
  assert second.returncode == 2, second.stderr[-3000:]
  assert "Traceback" not in second.stderr
  assert f"is in use by another run: pid {first.pid} on host {holder['host']}" in second.stderr
  assert first.poll() is None  # The holder runs on, undisturbed.

  first.send_signal(signal.SIGTERM)
  first.wait(timeout=300)
  log.close()
  output = (tmp_path / "first.log").read_text()
  assert first.returncode == 0 and "Preempted at step" in output, output[-3000:]
  assert not (workdir / "run.lock").exists()
  records = [json.loads(line) for line in metrics.read_text().splitlines()]
  steps = [record["step"] for record in records if "eval" not in record]
  assert steps == sorted(set(steps))  # One writer: every step once, in order.
  assert len(_history(workdir)) == 1
  assert os.listdir(workdir / "checkpoints") == [str(steps[-1])]

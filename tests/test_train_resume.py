"""Exact resume: SIGKILL then restart equals an uninterrupted run; SIGTERM; corrupt files."""

from __future__ import annotations

import json
import logging
import pathlib
import signal
import subprocess
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import cache_env, train_command

from pats_jax.training import checkpointing

# A run long enough to be interrupted: 2 epochs of 8 steps, checkpoints every 2 steps.
RUN = {
  "max_steps": -1,
  "checkpoint_every_steps": 2,
  "eval_every_steps": 4,
  "progress_bar": False,
  "mesh__data": 1,
  "write_test_predictions": False,
}


def _records(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _wait_for(predicate, process: subprocess.Popen, timeout: float = 300) -> None:
  deadline = time.monotonic() + timeout
  while not predicate():
    if process.poll() is not None:
      raise AssertionError(f"train.py exited with {process.returncode} before the condition")
    if time.monotonic() > deadline:
      process.kill()
      raise AssertionError("timed out waiting for train.py")
    time.sleep(0.2)


def _steps(workdir: pathlib.Path) -> list[int]:
  folder = workdir / "checkpoints"
  if not folder.exists():
    return []
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_sigkill_then_restart_matches_uninterrupted_run(tmp_path):
  env = cache_env()
  full, killed = tmp_path / "full", tmp_path / "killed"
  subprocess.run(train_command(full, **RUN), env=env, check=True, capture_output=True)
  process = subprocess.Popen(
    train_command(killed, **RUN), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  _wait_for(lambda: len(_steps(killed)) >= 2, process)  # Past step 4: Adam, PATS EMAs, key moved.
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed / "results.json").exists()
  subprocess.run(train_command(killed, **RUN), env=env, check=True, capture_output=True)
  expected = json.loads((full / "results.json").read_text())
  resumed = json.loads((killed / "results.json").read_text())
  assert resumed["final"] == expected["final"]
  assert resumed["best"] == expected["best"]
  full_records, resumed_records = _records(full), _records(killed)
  assert [r["step"] for r in resumed_records] == [r["step"] for r in full_records]
  for a, b in zip(full_records, resumed_records, strict=True):
    for key in ("loss", "grad_norm", "param_norm", "pats/amplitude_mean"):
      if key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["step"], key)


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = tmp_path / "run"
  process = subprocess.Popen(
    train_command(
      workdir, **{**RUN, "checkpoint_every_steps": 0, "eval_every_steps": 0, "num_epochs": 50}
    ),
    env=cache_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  metrics = workdir / "metrics.jsonl"
  _wait_for(lambda: metrics.exists() and metrics.read_text().count("\n") >= 3, process)
  process.send_signal(signal.SIGTERM)
  output, _ = process.communicate(timeout=300)
  assert process.returncode == 0, output
  assert "Preempted at step" in output
  steps = _steps(workdir)
  assert len(steps) == 1 and steps[0] >= 3
  assert not (workdir / "results.json").exists()


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, caplog):
  checkpointer = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  state = {"w": jnp.arange(6.0).reshape(2, 3), "key": jax.random.key(1)}
  for step in (1, 2):
    checkpointer.save(
      step,
      jax.tree.map(lambda x, s=step: x + s if x.dtype == jnp.float32 else x, state),
      {"step": step},
    )
  checkpointer.wait()
  for path in (tmp_path / "checkpoints" / "2" / "state").rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  target = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
  )
  with caplog.at_level(logging.WARNING):
    restored, meta = checkpointer.restore_latest(target)
  assert meta == {"step": 1}
  np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3) + 1)
  assert "Checkpoint 2" in caplog.text and "corrupt" in caplog.text
  assert checkpointer.latest_step() == 1
  assert (tmp_path / "checkpoints_corrupt" / "2").is_dir()
  checkpointer.save(2, state, {"step": 2})  # The step can be written again.
  checkpointer.close()


def test_no_checkpoint_restores_none_and_partial_saves_are_ignored(tmp_path):
  checkpointer = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  target = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
  assert checkpointer.restore_latest(target) is None
  checkpointer.save(3, {"w": jnp.ones(2)}, {"step": 3})
  checkpointer.wait()
  # An interrupted save leaves only a temporary folder, which is not a checkpoint.
  (tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1234").mkdir()
  checkpointer.close()
  reopened = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  assert reopened.latest_step() == 3
  assert reopened.restore_latest(target)[1] == {"step": 3}
  reopened.close()

"""Exact resume: SIGKILL (also inside a save) then restart equals an uninterrupted run; SIGTERM;
damaged checkpoints set aside, mismatched ones refused, failed saves reported."""

from __future__ import annotations

import errno
import json
import logging
import os
import pathlib
import signal
import subprocess
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from _train_helpers import cache_env, tiny_config, train_command, use_compilation_cache
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from pats_jax.training import checkpointing, trainer

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


def _steps(workdir: pathlib.Path, folder: str = "checkpoints") -> list[int]:
  path = workdir / folder
  if not path.exists():
    return []
  return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit())


def _final_params(workdir: pathlib.Path) -> dict[str, np.ndarray]:
  """The parameters of the newest checkpoint, as `{path: array}`."""
  path = workdir / "checkpoints" / str(_steps(workdir)[-1]) / "state"
  with ocp.PyTreeCheckpointer() as reader, warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Sharding info not provided")
    state = reader.restore(path)
  leaves = jax.tree_util.tree_flatten_with_path(state["params"])[0]
  return {jax.tree_util.keystr(key): np.asarray(leaf) for key, leaf in leaves}


def _assert_same_run(expected_dir: pathlib.Path, resumed_dir: pathlib.Path) -> None:
  expected = json.loads((expected_dir / "results.json").read_text())
  resumed = json.loads((resumed_dir / "results.json").read_text())
  assert resumed["final"] == expected["final"]
  assert resumed["best"] == expected["best"]
  full_records, resumed_records = _records(expected_dir), _records(resumed_dir)
  assert [r["step"] for r in resumed_records] == [r["step"] for r in full_records]
  for a, b in zip(full_records, resumed_records, strict=True):
    for key in ("loss", "grad_norm", "param_norm", "pats/amplitude_mean"):
      if key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["step"], key)
  expected_params, resumed_params = _final_params(expected_dir), _final_params(resumed_dir)
  assert expected_params.keys() == resumed_params.keys()
  for name, value in expected_params.items():
    np.testing.assert_allclose(resumed_params[name], value, rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
  """The workdir of the tiny PATS run (configs/tiny.py, method=pats) run straight through."""
  workdir = tmp_path_factory.mktemp("uninterrupted") / "run"
  subprocess.run(train_command(workdir, **RUN), env=cache_env(), check=True, capture_output=True)
  return workdir


@pytest.mark.slow
def test_sigkill_then_restart_matches_uninterrupted_run(tmp_path, uninterrupted):
  env = cache_env()
  killed = tmp_path / "killed"
  process = subprocess.Popen(
    train_command(killed, **RUN), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  _wait_for(lambda: len(_steps(killed)) >= 2, process)  # Past step 4: Adam, PATS EMAs, key moved.
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert not (killed / "results.json").exists()
  subprocess.run(train_command(killed, **RUN), env=env, check=True, capture_output=True)
  _assert_same_run(uninterrupted, killed)


@pytest.mark.slow
def test_sigkill_inside_a_checkpoint_save_then_restart_matches(tmp_path, uninterrupted):
  killed = tmp_path / "killed"
  env = {**cache_env(), checkpointing.PAUSE_IN_SAVE_ENV: "4:600"}
  process = subprocess.Popen(
    train_command(killed, **RUN),
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  pausing = f"pausing inside the save of checkpoint 4 in {killed / 'checkpoints'}"
  for line in process.stderr:
    if pausing in line:
      break
  else:
    raise AssertionError(f"train.py exited with {process.wait()} without reaching the save")
  # Inside the save: the files are in Orbax's temporary folder, not yet committed.
  partial = [p.name for p in (killed / "checkpoints").iterdir() if p.name.startswith("4.")]
  assert partial and _steps(killed) == [2]
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert (killed / "run.lock").exists()  # Left by the killed process; the rerun takes it over.

  rerun = subprocess.run(
    train_command(killed, **RUN), env=cache_env(), capture_output=True, text=True
  )
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "no longer runs" in rerun.stderr  # The dead holder's lock was taken over.
  assert not (killed / "run.lock").exists()
  assert not (killed / "checkpoints_corrupt").exists()  # Nothing finalized was damaged.
  assert not [p for p in (killed / "checkpoints").iterdir() if not p.name.isdigit()]
  history = [
    json.loads(line) for line in (killed / "config_history.jsonl").read_text().split("\n") if line
  ]
  assert [record["resumed_from"] for record in history] == [None, 2]
  _assert_same_run(uninterrupted, killed)


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
  assert not (workdir / "run.lock").exists()  # Released on the preemption path.


@pytest.mark.slow
def test_full_disk_during_a_save_stops_the_run_and_keeps_the_previous_checkpoint(
  tmp_path, monkeypatch
):
  use_compilation_cache()
  config = tiny_config(**{**RUN, "max_steps": 8})
  workdir = tmp_path / "run"
  real_save = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def disk_full_at_step_4(self, record, directory):
    if isinstance(record, dict) and record.get("step") == 4 and "checkpoints" in str(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return await real_save(self, record, directory)

  monkeypatch.setattr(
    json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full_at_step_4
  )
  with pytest.raises(checkpointing.CheckpointWriteError) as error:
    trainer.train_and_evaluate(config, workdir)
  message = str(error.value)
  assert "could not write checkpoint 4" in message and "No space left on device" in message
  assert "Checkpoint 2 is intact" in message
  assert _steps(workdir) == [2]
  assert not (workdir / "run.lock").exists()

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", real_save)
  results = trainer.train_and_evaluate(config, workdir)
  assert results["final"]["step"] == 8
  history = [
    json.loads(line) for line in (workdir / "config_history.jsonl").read_text().split("\n") if line
  ]
  assert history[-1]["resumed_from"] == 2
  assert _steps(workdir) == [6, 8]
  assert [r["step"] for r in _records(workdir) if "eval" not in r] == list(range(1, 9))


def _state(step: int) -> dict:
  return {"w": jnp.arange(6000.0).reshape(2, 3000) + step, "key": jax.random.key(1)}


def _target(state: dict) -> dict:
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _two_checkpoints(folder: pathlib.Path, **kwargs) -> checkpointing.Checkpointer:
  checkpointer = checkpointing.Checkpointer(folder, max_to_keep=3, **kwargs)
  for step in (1, 2):
    checkpointer.save(step, _state(step), {"step": step})
  checkpointer.wait()
  return checkpointer


def _garbage_everywhere(state_dir: pathlib.Path) -> None:
  for path in state_dir.rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")


def _truncate_data(state_dir: pathlib.Path) -> None:
  for path in (state_dir / "d").iterdir():
    path.write_bytes(path.read_bytes()[:16])


def _delete_process_data(state_dir: pathlib.Path) -> None:
  for path in state_dir.glob("ocdbt.process_*"):
    for file in path.rglob("*"):
      if file.is_file():
        file.unlink()


def _delete_ocdbt_manifest(state_dir: pathlib.Path) -> None:
  (state_dir / "manifest.ocdbt").unlink()


def _garbage_record(state_dir: pathlib.Path) -> None:
  (state_dir.parent / "meta" / "metadata").write_text("{trunc")


@pytest.mark.parametrize(
  "damage",
  [
    _garbage_everywhere,
    _truncate_data,
    _delete_process_data,
    _delete_ocdbt_manifest,
    _garbage_record,
  ],
)
def test_damaged_newest_checkpoint_is_set_aside_and_the_previous_used(tmp_path, caplog, damage):
  checkpointer = _two_checkpoints(tmp_path / "checkpoints", owner=True)
  damage(tmp_path / "checkpoints" / "2" / "state")
  with caplog.at_level(logging.WARNING):
    restored, meta = checkpointer.restore_latest(_target(_state(0)))
  assert meta == {"step": 1}
  np.testing.assert_array_equal(restored["w"], np.arange(6000.0).reshape(2, 3000) + 1)
  assert "Checkpoint 2" in caplog.text and "damaged" in caplog.text
  assert checkpointer.latest_step() == 1
  assert (tmp_path / "checkpoints_corrupt" / "2").is_dir()
  checkpointer.save(2, _state(2), {"step": 2})  # The step can be written again.
  checkpointer.close()


def test_a_reader_skips_a_damaged_checkpoint_without_moving_it(tmp_path, caplog):
  _two_checkpoints(tmp_path / "checkpoints").close()
  _truncate_data(tmp_path / "checkpoints" / "2" / "state")
  reader = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=3)
  with caplog.at_level(logging.WARNING):
    assert reader.restore_latest(_target(_state(0)))[1] == {"step": 1}
  assert "skipped it" in caplog.text
  assert _steps(tmp_path) == [1, 2] and not (tmp_path / "checkpoints_corrupt").exists()
  reader.close()


def test_checkpoint_of_another_model_is_a_mismatch_and_nothing_moves(tmp_path):
  checkpointer = _two_checkpoints(tmp_path / "checkpoints", owner=True)
  other = {"w": jax.ShapeDtypeStruct((4, 3000), jnp.float32), "key": _target(_state(0))["key"]}
  with pytest.raises(checkpointing.CheckpointMismatchError) as error:
    checkpointer.restore_latest(other)
  message = str(error.value)
  assert "checkpoint 2" in message and "does not fit" in message
  assert "w: checkpoint (2, 3000) float32, this model (4, 3000) float32" in message
  assert "nothing was moved" in message
  extra = {**_target(_state(0)), "b": jax.ShapeDtypeStruct((3,), jnp.float32)}
  with pytest.raises(checkpointing.CheckpointMismatchError, match="b: in this model, not in"):
    checkpointer.restore_latest(extra)
  assert _steps(tmp_path) == [1, 2] and not (tmp_path / "checkpoints_corrupt").exists()
  assert checkpointer.restore_latest(_target(_state(0)))[1] == {"step": 2}
  checkpointer.close()


def test_no_checkpoint_restores_none_and_partial_saves_are_ignored(tmp_path):
  checkpointer = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  target = {"w": jax.ShapeDtypeStruct((2,), jnp.float32)}
  assert checkpointer.restore_latest(target) is None
  checkpointer.save(3, {"w": jnp.ones(2)}, {"step": 3})
  checkpointer.wait()
  # An interrupted save leaves only a temporary folder, which is not a checkpoint.
  partial = tmp_path / "checkpoints" / "5.orbax-checkpoint-tmp-1234"
  partial.mkdir()
  checkpointer.close()
  reopened = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=2)
  assert reopened.latest_step() == 3
  assert reopened.restore_latest(target)[1] == {"step": 3}
  reopened.close()
  assert partial.exists()  # A reader leaves it: the run that owns the folder may be saving.
  owner = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=2, owner=True)
  assert owner.restore_latest(target)[1] == {"step": 3}
  owner.close()
  assert not partial.exists()  # The owner deletes what an interrupted save left.


# A full disk as Python reports it, and as TensorStore (Orbax's array storage) reports it.
DISK_FULL = [
  lambda path: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path),
  lambda path: ValueError(
    f'RESOURCE_EXHAUSTED: Error writing local file "{path}": No space left on device '
    "[os_error_code='28'] [tensorstore_spec='{}']"
  ),
]


@pytest.mark.parametrize("disk_full_error", DISK_FULL, ids=["oserror", "tensorstore"])
def test_failed_save_raises_a_write_error_and_keeps_the_previous_checkpoint(
  tmp_path, monkeypatch, disk_full_error
):
  checkpointer = _two_checkpoints(tmp_path / "checkpoints", owner=True)
  real_save = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def disk_full(self, record, directory):
    raise disk_full_error(str(directory))

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", disk_full)
  with pytest.raises(checkpointing.CheckpointWriteError) as error:
    checkpointer.save(3, _state(3), {"step": 3})
    checkpointer.wait()  # The save runs in the background: its failure shows here.
  message = str(error.value)
  assert "could not write checkpoint 3" in message and "No space left on device" in message
  assert "Checkpoint 2 is intact" in message and "tensorstore_spec" not in message
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", real_save)
  checkpointer.close()
  reopened = checkpointing.Checkpointer(tmp_path / "checkpoints", max_to_keep=3, owner=True)
  assert reopened.restore_latest(_target(_state(0)))[1] == {"step": 2}
  assert _steps(tmp_path) == [1, 2]
  reopened.close()

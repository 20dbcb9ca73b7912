"""Preemption: a SIGTERM stops a run at once where nothing is lost (start-up, evaluations, after
the last step) and otherwise saves before anything else; and how the multi-process service is
detected (`checkpointing._preemption_service_running`)."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import time
from collections.abc import Iterator

import jax
import pytest
from _train_helpers import tiny_config, use_compilation_cache
from jax._src import distributed

from pats_jax.training import checkpointing, steps, trainer


def test_service_state_read_from_jax(monkeypatch):
  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", None)
  assert not checkpointing._preemption_service_running()
  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", object())
  assert checkpointing._preemption_service_running()


def test_falls_back_to_the_public_flag_if_jax_moves_its_state(monkeypatch):
  monkeypatch.setattr(distributed, "global_state", object())  # No preemption_sync_manager.
  before = jax.config.jax_enable_preemption_service
  try:
    for enabled in (True, False):
      jax.config.update("jax_enable_preemption_service", enabled)
      assert checkpointing._preemption_service_running() is enabled
  finally:
    jax.config.update("jax_enable_preemption_service", before)


# The SIGTERM handler (`PreemptionFlag`) and what the trainer does with it. The signals are sent
# to this process while a handler of the test's own is installed beneath the trainer's, so that
# a SIGTERM the trainer does not catch is recorded instead of ending the test run.


def _sigterm_self() -> None:
  """Sends SIGTERM to this process; a handler that raises does so before this returns."""
  os.kill(os.getpid(), signal.SIGTERM)
  for _ in range(100):  # The handler runs at the next bytecode; sleeping lets it in.
    time.sleep(0.01)


@contextlib.contextmanager
def _sigterm_recorded() -> Iterator[list[int]]:
  """Installs a handler that records SIGTERMs the code under test leaves to it."""
  received: list[int] = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    yield received
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_flag_raises_at_once_where_nothing_is_lost_and_defers_elsewhere():
  with _sigterm_recorded() as received:
    outer = signal.getsignal(signal.SIGTERM)
    with checkpointing.PreemptionFlag() as flag:
      flag.start()
      flag.interrupt_at_once(True)  # Start-up: a SIGTERM stops at once.
      with pytest.raises(checkpointing.Preempted):
        _sigterm_self()
      assert flag.reached(0)
      _sigterm_self()  # Once only: cleaning up after the first is not interrupted.
    assert signal.getsignal(signal.SIGTERM) is outer  # Restored.

    with checkpointing.PreemptionFlag() as flag:
      flag.start()  # Taking the lock, training: the step finishes, then the loop saves.
      assert not flag.reached(1)
      _sigterm_self()
      assert flag.reached(2)
      with pytest.raises(checkpointing.Preempted), flag.interrupting():
        pass  # An evaluation after the notice does not start.
    assert not received


def _jit_steps_with_sigterm_in_step(step: int):
  """`steps.jit_steps`, whose train step sends a SIGTERM while it makes step `step`."""
  jit_steps = steps.jit_steps

  def patched(*args, **kwargs):
    train_step, eval_step, pats_stats = jit_steps(*args, **kwargs)

    def train_step_with_sigterm(state, batch):
      if int(state.step) == step - 1:
        _sigterm_self()
      return train_step(state, batch)

    return train_step_with_sigterm, eval_step, pats_stats

  return patched


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  folder = workdir / "checkpoints"
  return (
    sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []
  )


def _eval_records(workdir: pathlib.Path) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [record for record in map(json.loads, lines) if "eval" in record]


@pytest.mark.slow
def test_sigterm_during_start_up_stops_before_compiling(tmp_path, monkeypatch):
  use_compilation_cache()
  tokenize_task = trainer.tokenize_task

  def tokenize_then_sigterm(*args, **kwargs):
    task = tokenize_task(*args, **kwargs)
    _sigterm_self()
    return task

  compiled = []
  jit_steps = steps.jit_steps
  monkeypatch.setattr(trainer, "tokenize_task", tokenize_then_sigterm)
  monkeypatch.setattr(steps, "jit_steps", lambda *a, **k: compiled.append(1) or jit_steps(*a, **k))
  workdir = tmp_path / "new" / "run"
  with _sigterm_recorded() as received:
    results = trainer.train_and_evaluate(tiny_config(), workdir)
  assert not received  # The trainer caught it ...
  assert results["preempted"] is None and "before training started" in results["message"]
  assert not compiled  # ... and stopped at once.
  assert not (tmp_path / "new").exists()  # The folder the start created is removed.


@pytest.mark.slow
def test_sigterm_with_an_evaluation_due_saves_first_and_the_rerun_evaluates(tmp_path, monkeypatch):
  use_compilation_cache()
  config = tiny_config(max_steps=6, eval_every_steps=4, checkpoint_every_steps=0)
  expected = trainer.train_and_evaluate(config, tmp_path / "uninterrupted")

  workdir = tmp_path / "run"
  evaluated = []
  evaluate = trainer.evaluate
  monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: evaluated.append(1) or evaluate(*a, **k))
  with monkeypatch.context() as patch, _sigterm_recorded() as received:
    patch.setattr(steps, "jit_steps", _jit_steps_with_sigterm_in_step(4))
    results = trainer.train_and_evaluate(config, workdir)
  assert not received
  assert not evaluated  # The evaluation due at step 4 did not delay the checkpoint.
  assert results["preempted"] == 4 and "Preempted at step 4" in results["message"]
  assert _checkpoint_steps(workdir) == [4] and not _eval_records(workdir)
  assert not (workdir / "run.lock").exists()

  # SIGTERM again while the rerun starts: the checkpoint and its due evaluation are kept.
  with monkeypatch.context() as patch, _sigterm_recorded() as received:
    patch.setattr(steps, "jit_steps", lambda *a, **k: _sigterm_self())
    assert trainer.train_and_evaluate(config, workdir)["preempted"] is None
  assert not received and _checkpoint_steps(workdir) == [4]

  resumed = trainer.train_and_evaluate(config, workdir)
  assert evaluated  # The due evaluation came first, so the run reads as uninterrupted.
  assert [r["step"] for r in _eval_records(workdir)] == [4, 6]
  assert _eval_records(workdir) == _eval_records(tmp_path / "uninterrupted")
  assert resumed["best"] == expected["best"] and resumed["final"] == expected["final"]


@pytest.mark.slow
def test_sigterm_during_test_predictions_stops_with_the_final_checkpoint(tmp_path, monkeypatch):
  use_compilation_cache()
  config = tiny_config(max_steps=2, write_test_predictions=True)
  workdir = tmp_path / "run"
  write_test_predictions = trainer._write_test_predictions

  def sigterm_then_predict(*args, **kwargs):
    _sigterm_self()
    return write_test_predictions(*args, **kwargs)

  with monkeypatch.context() as patch, _sigterm_recorded() as received:
    patch.setattr(trainer, "_write_test_predictions", sigterm_then_predict)
    results = trainer.train_and_evaluate(config, workdir)
  assert not received
  assert results["preempted"] == 2 and "results.json is not" in results["message"]
  assert _checkpoint_steps(workdir) == [2]
  assert not (workdir / "results.json").exists() and not (workdir / "run.lock").exists()
  assert not list(workdir.glob("glue_submission/*"))

  resumed = trainer.train_and_evaluate(config, workdir)  # Evaluates the final checkpoint.
  assert resumed["final"]["metrics"] == _eval_records(workdir)[-1]["eval"]
  assert resumed["test_predictions"] and (workdir / "results.json").exists()

"""Orbax checkpoints that let a run continue exactly, and a SIGTERM handler for preemption.

A checkpoint holds the whole `TrainState` (step, params, optimizer state with the PATS EMAs and
PRNG key, non-finite count) and a JSON record of the data position (epoch, batch in epoch), the
seed and the best dev metric so far. Dropout keys derive from (seed, step), so nothing else is
needed. Orbax writes each checkpoint into a temporary folder and renames it when complete, so an
interrupted save is never listed; a listed checkpoint that fails to restore (corrupt files) is
moved aside with a warning and the previous one is used.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores `(state, meta)` pairs in `directory` with an `ocp.CheckpointManager`.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      item_names=("state", "meta"),
    )

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` (any pytree of arrays) and `meta` (JSON) as checkpoint `step`, if new."""
    if step in self._manager.all_steps():
      return
    self._manager.save(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    )

  def wait(self) -> None:
    """Blocks until pending saves are on disk."""
    self._manager.wait_until_finished()

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores the newest checkpoint that loads, skipping corrupt ones with a warning.

    Args:
      abstract_state: the state's structure with `jax.ShapeDtypeStruct` leaves carrying the
        target shardings (e.g. `jax.eval_shape` of the initial state plus shardings).

    Returns:
      `(state, meta)`, or None when there is no checkpoint.

    Raises:
      RuntimeError: every checkpoint in the folder failed to restore.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      try:
        restored = self._manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
          ),
        )
      except Exception as error:  # Any failure means this checkpoint is unusable.
        self._set_aside(step, error)
        continue
      return restored["state"], dict(restored["meta"])
    if steps:
      raise RuntimeError(
        f"no checkpoint in {self.directory} could be restored (tried {steps}); "
        "delete the folder to start the run afresh"
      )
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    aside = self.directory.parent / f"{self.directory.name}_corrupt" / str(step)
    logging.warning(
      "Checkpoint %d in %s is partial or corrupt (%s: %s); moved it to %s and "
      "trying the previous one.",
      step,
      self.directory,
      type(error).__name__,
      str(error).splitlines()[0] if str(error) else "",
      aside,
    )
    if jax.process_index() == 0:
      aside.parent.mkdir(parents=True, exist_ok=True)
      if aside.exists():
        shutil.rmtree(aside)
      shutil.move(str(self.directory / str(step)), str(aside))
    self._manager.reload()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


def _preemption_service_running() -> bool:
  """Whether `jax.distributed.initialize` started JAX's preemption service in this process.

  The service's state has no public accessor: read it where JAX keeps it, and if a JAX
  version moved it, fall back to the public flag that asks `initialize` to start it.
  """
  try:
    from jax._src import distributed

    return distributed.global_state.preemption_sync_manager is not None
  except (ImportError, AttributeError):
    return bool(jax.config.jax_enable_preemption_service)


class PreemptionFlag:
  """Tells the loop at which step to write a checkpoint and exit after a SIGTERM.

  One process: SIGTERM sets a flag (a handler installed in the main thread only; `close()`
  restores the previous one) and `reached(step)` is true from the next step on. Several
  processes (a pod slice): the notice may reach the hosts at different steps while saving
  a checkpoint is collective, so they must agree on one step. JAX's preemption service
  (started by `jax.distributed.initialize`; it catches SIGTERM itself, so no Python handler
  is installed) propagates the notice and picks the step after the furthest host's;
  `reached(step)` asks it through `multihost_utils.reached_preemption_sync_point`, which every
  process calls at every step with the same step ids.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self._coordinated = jax.process_count() > 1
    if self._coordinated:
      if not _preemption_service_running():
        logging.warning(
          "jax_enable_preemption_service is off: a SIGTERM kills this multi-process run; "
          "it resumes from the last periodic checkpoint (config.checkpoint_every_steps)."
        )
        self._coordinated = None
    elif threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum: int, frame: Any) -> None:
    del signum, frame
    logging.warning("SIGTERM received: saving a checkpoint, then exiting.")
    self._event.set()

  def reached(self, step: int) -> bool:
    """True when the loop should save after `step` and exit; call it at every step."""
    if self._coordinated:
      from jax.experimental import multihost_utils

      if multihost_utils.reached_preemption_sync_point(step):
        logging.warning("Preemption notice: all processes save at step %d, then exit.", step)
        return True
      return False
    return self._event.is_set()

  def close(self) -> None:
    """Restores the SIGTERM handler that was there before."""
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

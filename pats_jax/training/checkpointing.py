"""Orbax checkpoints that let a run continue exactly, and a SIGTERM handler for preemption.

A checkpoint holds the whole `TrainState` (step, params, optimizer state with the PATS EMAs and
PRNG key, non-finite count) and a JSON record of the data position (epoch, batch in epoch), the
seed and the best dev metric so far. Dropout keys derive from (seed, step), so nothing else is
needed.

What is set aside, and what is not. Orbax writes each checkpoint into a temporary folder and
renames it when complete (or, on filesystems without atomic rename, writes `commit_success.txt`
last), so an interrupted save is never listed; the workdir's owner deletes such leftovers when
it opens the folder. A listed checkpoint is checked before it is used:

1. Orbax's own marker says it is finalized (`ocp.path.step.is_path_finalized`);
2. its metadata reads: the JSON record, Orbax's tree metadata and every array's header, which
   live in the same files as the data, so a missing or truncated file fails here;
3. its arrays have the structure, shapes and dtypes of the state asked for; a difference is not
   damage but another model or optimizer: `CheckpointMismatchError`, and nothing is moved;
4. its data restores: a read error of a checkpoint that passed 1-3 means damaged data files.

A checkpoint failing 1, 2 or 4 is damaged: the owner moves it to `<folder>_corrupt/<step>` with
a warning (a reader only skips it) and the previous one is tried. Any other error propagates and
moves nothing. A save that fails (a full disk, a read-only folder) raises `CheckpointWriteError`;
the previous checkpoints are untouched, since Orbax removes old ones only after a save completes.

For tests, `PATS_JAX_TEST_PAUSE_IN_SAVE=<step>:<seconds>` makes the save of checkpoint `<step>`
pause after its files are written and before it is committed, so that a test can kill the
process inside a save; unset, it does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp

from pats_jax.training import validate

PAUSE_IN_SAVE_ENV = "PATS_JAX_TEST_PAUSE_IN_SAVE"


class CheckpointMismatchError(validate.ConfigError):
  """A checkpoint does not fit the model or optimizer of the config (not damage)."""


class CheckpointWriteError(validate.ConfigError):
  """A checkpoint could not be written (full disk, no permission); earlier ones are intact."""


def _path_name(path: tuple[Any, ...]) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _stored_specs(abstract_state: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """`{leaf path: (shape, dtype)}` as Orbax stores the leaves (PRNG keys as their uint32 data)."""

  def spec(leaf: Any) -> tuple[tuple[int, ...], str]:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(leaf.shape, leaf.dtype))
    return tuple(leaf.shape), str(jax.numpy.dtype(leaf.dtype))

  leaves = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
  return {_path_name(path): spec(leaf) for path, leaf in leaves}


def _mismatches(saved: Any, asked: Any, limit: int = 5) -> list[str]:
  """Differences between a checkpoint's tree metadata and the state asked for, as lines."""
  have, want = _stored_specs(saved), _stored_specs(asked)
  lines = [
    f"{name}: in the checkpoint, not in this model" for name in sorted(set(have) - set(want))
  ]
  lines += [
    f"{name}: in this model, not in the checkpoint" for name in sorted(set(want) - set(have))
  ]
  for name in sorted(set(have) & set(want)):
    if have[name] != want[name]:
      (shape, dtype), (asked_shape, asked_dtype) = have[name], want[name]
      lines.append(f"{name}: checkpoint {shape} {dtype}, this model {asked_shape} {asked_dtype}")
  if len(lines) > limit:
    lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
  return lines


def _is_read_error(error: Exception) -> bool:
  """Errors that mean a file could not be read or decoded (TensorStore reports a failed array
  read as a bare `Exception`); not e.g. out-of-memory errors, which say nothing of the files."""
  return isinstance(error, OSError | ValueError | KeyError) or (
    type(error) is Exception and "TensorStore" in str(error)
  )


# Status codes with which TensorStore (Orbax's array storage) reports failed file operations.
_STORAGE_STATUS = (
  "RESOURCE_EXHAUSTED",
  "PERMISSION_DENIED",
  "NOT_FOUND",
  "UNAVAILABLE",
  "DATA_LOSS",
  "OUT_OF_RANGE",
  "FAILED_PRECONDITION",
  "ABORTED",
  "INTERNAL",
  "UNKNOWN",
)


def _is_write_error(error: Exception) -> bool:
  """A failed write: an `OSError`, or TensorStore's `ValueError` with a storage status (a full
  disk reads `RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']`)."""
  return isinstance(error, OSError) or (
    isinstance(error, ValueError) and str(error).startswith(_STORAGE_STATUS)
  )


def _first_line(error: BaseException, limit: int = 400) -> str:
  """`Type: first line of the message`, without TensorStore's spec and at most `limit` long."""
  text = str(error).strip()
  text = text.splitlines()[0].split(" [tensorstore_spec=")[0] if text else ""
  if len(text) > limit:
    text = text[: limit - 3] + "..."
  return f"{type(error).__name__}: {text}"


class Checkpointer:
  """Saves and restores `(state, meta)` pairs in `directory` with an `ocp.CheckpointManager`.

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: how many of the newest checkpoints to keep.
    owner: this process holds the workdir (`workdir.RunLock`): it deletes interrupted saves and
      moves damaged checkpoints aside. Others only skip damaged checkpoints.
  """

  def __init__(self, directory: str | pathlib.Path, *, max_to_keep: int, owner: bool = False):
    self.directory = pathlib.Path(directory).absolute()
    self._owner = owner
    self._saving: int | None = None
    pause = os.environ.get(PAUSE_IN_SAVE_ENV)
    async_options = ocp.AsyncOptions(post_finalization_callback=self._pause_hook) if pause else None
    try:
      self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep,
          create=True,
          cleanup_tmp_directories=owner,
          async_options=async_options,
        ),
        item_handlers={
          "state": ocp.StandardCheckpointHandler(),
          "meta": ocp.JsonCheckpointHandler(),
        },
      )
    except OSError as error:
      raise CheckpointWriteError(
        f"cannot write checkpoints to {self.directory} ({_first_line(error)}); choose a writable "
        "--workdir"
      ) from error

  def _pause_hook(self) -> None:
    """Test hook (see the module docstring): runs after the files, before the commit."""
    step, _, seconds = os.environ.get(PAUSE_IN_SAVE_ENV, "").partition(":")
    if step.strip() == str(self._saving):
      print(
        f"{PAUSE_IN_SAVE_ENV}: pausing inside the save of checkpoint {step} in {self.directory}",
        file=sys.stderr,
        flush=True,
      )
      time.sleep(float(seconds or 60))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def _write_error(self, step: int | None, error: BaseException) -> CheckpointWriteError:
    previous = [s for s in self._manager.all_steps() if step is None or s < step]
    kept = (
      f"Checkpoint {max(previous)} is intact and a rerun of the same command resumes from it"
      if previous
      else "No earlier checkpoint exists"
    )
    which = f"checkpoint {step}" if step is not None else "a checkpoint"
    return CheckpointWriteError(
      f"could not write {which} to {self.directory} ({_first_line(error)}); the run stopped. "
      f"{kept}. Free disk space or make the folder writable, then rerun."
    )

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    """Saves `state` (any pytree of arrays) and `meta` (JSON) as checkpoint `step`, if new.

    Raises:
      CheckpointWriteError: this save, or the previous one still in flight, failed to write.
    """
    if step in self._manager.all_steps():
      return
    self.wait()
    self._saving = step
    try:
      self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
      )
    except (OSError, ValueError) as error:
      if not _is_write_error(error):
        raise
      raise self._write_error(step, error) from error

  def wait(self) -> None:
    """Blocks until pending saves are on disk.

    Raises:
      CheckpointWriteError: the pending save failed to write.
    """
    try:
      self._manager.wait_until_finished()
    except (OSError, ValueError) as error:
      if not _is_write_error(error):
        raise
      raise self._write_error(self._saving, error) from error

  def _damage(self, step: int) -> Exception | None:
    """Why checkpoint `step` is damaged (checks 1 and 2 of the module docstring), or None."""
    path = self.directory / str(step)
    if not ocp.path.step.is_path_finalized(path):
      return ValueError(f"{path} is not a finalized Orbax checkpoint")
    try:
      meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      if not isinstance(meta["meta"], dict):
        return ValueError("its JSON record is not an object")
      self._manager.item_metadata(step)["state"]
    except Exception as error:  # Classified by _is_read_error.
      if _is_read_error(error):
        return error
      raise
    return None

  def _check_fits(self, step: int, abstract_state: Any) -> None:
    saved = self._manager.item_metadata(step)["state"]
    saved = saved.tree if hasattr(saved, "tree") else saved
    lines = _mismatches(saved, abstract_state)
    if lines:
      raise CheckpointMismatchError(
        f"checkpoint {step} in {self.directory} does not fit the model and optimizer of this "
        "config:\n  " + "\n  ".join(lines) + "\nIt was written by a run with another model or "
        "optimizer; nothing was moved. Use a new --workdir for this config, or rerun with the "
        "config the workdir was started with."
      )

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict[str, Any]] | None:
    """Restores the newest intact checkpoint, setting damaged ones aside with a warning.

    Args:
      abstract_state: the state's structure with `jax.ShapeDtypeStruct` leaves carrying the
        target shardings (e.g. `jax.eval_shape` of the initial state plus shardings).

    Returns:
      `(state, meta)`, or None when there is no checkpoint.

    Raises:
      CheckpointMismatchError: the newest intact checkpoint does not fit `abstract_state`.
      RuntimeError: every checkpoint in the folder is damaged.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    for step in steps:
      damage = self._damage(step)
      if damage is None:
        self._check_fits(step, abstract_state)
        try:
          restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
              state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
          )
          return restored["state"], dict(restored["meta"])
        except Exception as error:  # Classified by _is_read_error.
          if not _is_read_error(error):
            raise
          damage = error
      self._set_aside(step, damage)
    if steps:
      raise RuntimeError(
        f"every checkpoint in {self.directory} is damaged (tried {steps}); delete the "
        "workdir to start the run afresh"
      )
    return None

  def _set_aside(self, step: int, error: Exception) -> None:
    aside = self.directory.parent / f"{self.directory.name}_corrupt" / str(step)
    action = f"moved it to {aside}" if self._owner else "skipped it"
    logging.warning(
      "Checkpoint %d in %s is damaged (%s); %s and trying the previous one.",
      step,
      self.directory,
      _first_line(error),
      action,
    )
    if self._owner and jax.process_index() == 0:
      aside.parent.mkdir(parents=True, exist_ok=True)
      if aside.exists():
        shutil.rmtree(aside)
      shutil.move(str(self.directory / str(step)), str(aside))
    if self._owner:
      self._manager.reload()

  def close(self) -> None:
    """Waits for pending saves and releases the manager.

    Raises:
      CheckpointWriteError: the pending save failed to write.
    """
    try:
      self.wait()
    finally:
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


class Preempted(BaseException):
  """A SIGTERM stopped the run at a point where stopping at once loses nothing.

  Raised by `PreemptionFlag` while `interrupt_at_once(True)` holds or inside `interrupting()`:
  a `BaseException`, like `KeyboardInterrupt`, so that no `except Exception` on the way
  swallows it.
  """


class PreemptionFlag:
  """Turns a SIGTERM into a checkpoint and a clean exit (a context manager).

  One process: from `start()` on, a SIGTERM handler (installed in the main thread only; `close()`
  restores the previous one) acts by what the run is doing:

  - where stopping loses nothing and leaves no file half-written (start-up: loading,
    tokenising, compiling, restoring; an evaluation or prediction, which changes no state;
    `interrupt_at_once(True)` and `interrupting()` mark these) it raises `Preempted` at once,
    so the run stops within moments;
  - elsewhere (taking the workdir's lock, a training step, writing a checkpoint or a file) it
    only sets a flag, and `reached(step)` is true from the next step on: the loop then saves
    and exits. Entering `interrupting()` with the flag set raises `Preempted` at once.

  The handler raises at most once; a later SIGTERM only sets the flag.

  Several processes (a pod slice): the notice may reach the hosts at different steps while
  saving a checkpoint is collective, so they must agree on one step. JAX's preemption service
  (started by `jax.distributed.initialize`; it catches SIGTERM itself, so no Python handler is
  installed and nothing is raised) propagates the notice and picks the step after the furthest
  host's; `reached(step)` asks it through `multihost_utils.reached_preemption_sync_point`, which
  every process calls at every step with the same step ids. A notice during start-up is acted
  on at the first step.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    self._installed = False
    self._coordinated: bool | None = False
    self._interrupt = False

  def __enter__(self) -> PreemptionFlag:
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()

  def start(self) -> None:
    """Starts listening (after `jax.distributed.initialize`); a SIGTERM only sets the flag until
    `interrupt_at_once(True)`.

    Called once the process count is known: before it a SIGTERM ends the process, which has
    written nothing yet.
    """
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
      self._installed = True

  def _handle(self, signum: int, frame: Any) -> None:
    del signum, frame
    self._event.set()
    if self._interrupt:
      self._interrupt = False
      logging.warning("SIGTERM received: stopping now.")
      raise Preempted("SIGTERM")
    logging.warning("SIGTERM received: stopping after the step under way, with a checkpoint.")

  def interrupt_at_once(self, enabled: bool) -> None:
    """Whether a SIGTERM from now on raises `Preempted` at once, or only sets the flag.

    Raises:
      Preempted: `enabled` while a SIGTERM has already arrived.
    """
    if enabled and self._event.is_set() and self._installed:
      raise Preempted("SIGTERM")
    self._interrupt = enabled and self._installed

  @contextlib.contextmanager
  def interrupting(self) -> Iterator[None]:
    """A block (an evaluation, a prediction) that a SIGTERM stops at once with `Preempted`."""
    self.interrupt_at_once(True)
    try:
      yield
    finally:
      self._interrupt = False

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
    self._interrupt = False
    if self._installed:  # None: a handler not set from Python; the default is the closest.
      signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
      self._installed = False
      self._previous = None

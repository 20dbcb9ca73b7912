"""A run's workdir: one writer at a time, and the config of the run it holds.

**One writer.** A run takes `<workdir>/run.lock`, a JSON file naming the holder (host, pid,
process start, start time, command), created with `os.open(O_CREAT | O_EXCL)` so that of two
processes only one can create it: at the start when the workdir exists, else when the run
creates it. A second `train.py` on the same workdir stops with a `WorkdirError` naming the
holder, before it reads or writes anything there. A lock whose holder is gone (same host, and
the pid no longer runs or now belongs to a process started later: a reused pid) is taken over
with a warning; the takeover renames the stale file aside first, so of two processes that both
find it stale only one takes it. The lock is removed when the run ends: normally, by an
exception, or by a SIGTERM (preemption: after the checkpoint it asks for, or at once before
training starts). A process killed otherwise (SIGKILL) leaves it behind; the next run on the
same host takes it over. With several processes
(`jax.process_count() > 1`) only process 0 takes the lock and reads or writes the workdir's
records; it tells the others whether the workdir could be opened, so all of them stop together.

**Shared filesystems.** `O_EXCL` is atomic on local filesystems and on NFSv3 and later; on NFSv2
and some FUSE filesystems (e.g. GCS FUSE, where objects have no exclusive create) two hosts may
both believe they created the lock: there, start one run per workdir yourself. The liveness of
a pid can only be checked on its own host, so a lock written on another host is never taken
over automatically: the message says which host holds it and to delete `run.lock` once that run
is known to be gone.

**The run it holds.** A workdir with training progress (a checkpoint, metrics or results) keeps
the config it was started with in `config.json`. Before anything in the workdir is read or
moved, the new config is compared with it: every field must match, except those listed in
`FREE_FIELDS`, which cannot change the result (logging, evaluation and checkpoint cadence,
`max_steps`, the progress bar, the tokenisation cache, how processes find each other). Any
other field, including one added to the configs later, is part of the run's identity. A
difference stops the run with one message listing each field with its saved and new value;
nothing is changed. An intended change (e.g. a longer schedule) is allowed by naming the fields:
`train.py --allow_config_change=num_epochs,learning_rate` (or
`train_and_evaluate(..., allow_config_change=(...))`); a name also covers the fields under it
(`pats` covers `pats.noise_scale`). A workdir without progress (a run that stopped before its
first checkpoint and metrics) takes the new config as it is. Once the newest checkpoint is
restored (so a failed start leaves the saved config in place), the start is appended to
`config_history.jsonl` with the fields that changed, and `config.json` holds the new config.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import pathlib
import shutil
import socket
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from pats_jax.training import validate, writers

LOCK_NAME = "run.lock"
CONFIG_NAME = "config.json"
HISTORY_NAME = "config_history.jsonl"

# Fields that cannot change what a run computes; a name covers the fields under it. Every
# other field identifies the run, so a field added later is part of the identity by default.
FREE_FIELDS: tuple[str, ...] = (
  "max_steps",  # Where this invocation stops; the schedule spans num_epochs regardless.
  "log_every_steps",
  "pats_stats_every_steps",
  "eval_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "progress_bar",
  "tensorboard",
  "write_test_predictions",
  "eval_batch_size",  # Only how the dev set is cut into batches for evaluation.
  "data.cache_dir",  # Where tokenised data is cached, not what it is.
  "model_config.remat",  # Recomputes activations in the backward pass; the same function.
  "model_config.remat_policy",  # Which activations remat recomputes; the same function.
  "model_config.scan_unroll",  # Stacked layers per loop iteration; the same function and masks.
  "distributed",  # How processes find each other (coordinator address, process ids).
)

_ABSENT = "(not set)"


class WorkdirError(validate.ConfigError):
  """The workdir cannot be used for this run; the message says why and what to do."""


def _show(value: Any) -> str:
  return value if value is _ABSENT else repr(value)


def _covers(names: Iterable[str], field: str) -> bool:
  return any(field == name or field.startswith(name + ".") for name in names)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}` (JSON values of a config)."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict) and value:
      flat.update(flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config as config.json stores it (plain JSON values)."""
  return json.loads(json.dumps(config.to_dict(), default=str))


def config_changes(saved: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
  """`{field: (saved value, new value)}` for every dotted field that differs."""
  before, after = flatten(saved), flatten(new)
  return {
    field: (before.get(field, _ABSENT), after.get(field, _ABSENT))
    for field in sorted(set(before) | set(after))
    if before.get(field, _ABSENT) != after.get(field, _ABSENT)
  }


def has_progress(path: pathlib.Path) -> bool:
  """Whether the workdir holds anything of a run: a checkpoint, metrics or results."""

  def steps(folder: pathlib.Path) -> bool:
    return folder.is_dir() and any(p.name.split(".")[0].isdigit() for p in folder.iterdir())

  metrics = path / "metrics.jsonl"
  return (
    steps(path / "checkpoints")
    or steps(path / "best")
    or (path / "results.json").exists()
    or (metrics.exists() and metrics.stat().st_size > 0)
  )


def _now() -> str:
  return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _process_start(pid: int) -> int | None:
  """The start time of `pid` in clock ticks since boot (Linux), to tell a reused pid."""
  try:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19])  # Field 22 of proc(5); the split drops the first two.
  except (OSError, IndexError, ValueError):
    return None


def _alive(holder: dict[str, Any]) -> bool:
  """Whether the process named by a lock on this host still runs (and is the same one)."""
  try:
    pid = int(holder["pid"])
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # Another user's process.
  except (KeyError, TypeError, ValueError):
    return True  # Not a lock this module wrote: never taken over.
  started = holder.get("process_start")
  return started is None or _process_start(pid) in (None, started)


def describe_holder(holder: dict[str, Any]) -> str:
  """`pid 123 on host h, started 2026-01-01 10:00:00 UTC`."""
  return (
    f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
    f"started {holder.get('started', '?')}"
  )


class RunLock:
  """`<workdir>/run.lock`: held by one process at a time (see the module docstring)."""

  def __init__(self, directory: pathlib.Path):
    self.path = directory / LOCK_NAME
    self._token: str | None = None

  @property
  def held(self) -> bool:
    return self._token is not None

  def _read(self, path: pathlib.Path) -> dict[str, Any] | None:
    try:
      return json.loads(path.read_text())
    except FileNotFoundError:
      return None
    except (OSError, ValueError):
      return {"unreadable": True}

  def acquire(self) -> None:
    """Creates the lock file, or takes over a dead holder's on this host.

    Raises:
      WorkdirError: a live process (or one on another host) holds it, or it cannot be written.
    """
    token = uuid.uuid4().hex
    holder = {
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "process_start": _process_start(os.getpid()),
      "started": _now(),
      "command": " ".join(sys.argv),
      "token": token,
    }
    for _ in range(5):
      try:
        descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        found = self._read(self.path)
        if found is None:
          continue  # Released meanwhile: try again.
        if found.get("host") == holder["host"] and not _alive(found):
          self._take_over(found)
          continue
        raise WorkdirError(self._held_message(found)) from None
      except OSError as error:
        raise WorkdirError(
          f"cannot write to the workdir {self.path.parent} ({error.strerror}); choose a "
          "writable --workdir"
        ) from None
      try:
        os.write(descriptor, (json.dumps(holder, indent=2) + "\n").encode())
        os.fsync(descriptor)
      except OSError as error:
        os.close(descriptor)
        self.path.unlink(missing_ok=True)
        raise WorkdirError(
          f"cannot write to the workdir {self.path.parent} ({error.strerror}); free space or "
          "choose a writable --workdir"
        ) from None
      os.close(descriptor)
      self._token = token
      return
    raise WorkdirError(f"could not take {self.path}: other processes keep replacing it")

  def _held_message(self, holder: dict[str, Any]) -> str:
    if holder.get("unreadable"):
      who = "an unknown process (the lock file is unreadable)"
    else:
      who = describe_holder(holder)
    other_host = holder.get("host") not in (None, socket.gethostname())
    gone = "its host is gone or the run was killed" if other_host else "that process is gone"
    return (
      f"the workdir {self.path.parent} is in use by another run: {who}. Wait for it to "
      f"finish, or use another --workdir. If {gone}, delete {self.path} and rerun."
    )

  def _take_over(self, stale: dict[str, Any]) -> None:
    """Removes the lock of a dead holder, unless another process replaced it meanwhile."""
    aside = self.path.with_name(f"{LOCK_NAME}.stale-{uuid.uuid4().hex}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return  # Another process took it over first.
    moved = self._read(aside)
    if moved != stale:  # A fresh lock replaced the stale one between read and rename.
      with contextlib.suppress(OSError):
        os.link(aside, self.path)
      aside.unlink(missing_ok=True)
      return
    aside.unlink(missing_ok=True)
    logging.warning(
      "Took over %s left by a process that no longer runs (%s).", self.path, describe_holder(stale)
    )

  def release(self) -> None:
    """Removes the lock file if this object still holds it."""
    if self._token is None:
      return
    found = self._read(self.path)
    if found is not None and found.get("token") == self._token:
      with contextlib.suppress(OSError):
        self.path.unlink()
    self._token = None


class RunDirectory:
  """A run's workdir, opened for one run: lock, config check, config records.

  Use as a context manager around the run (it releases the lock on exit):

    with RunDirectory(workdir, config, allow_config_change=()) as run:
      run.open()      # Create the workdir if new, lock it, compare the configs.
      ...             # Load data and model; restore the newest checkpoint.
      run.record_start(resumed_from=step)  # config.json and config_history.jsonl.

  A workdir that `open` created is removed again on exit when the run never started
  (`record_start` was not reached): a failed start leaves no folder behind, and holding the
  lock from the start means a second process on the same new folder fails at once.

  Args:
    path: the workdir.
    config: the new run's config.
    allow_config_change: fields (dotted names, or a parent covering its fields) that may
      differ from the saved config.
  """

  def __init__(
    self,
    path: str | os.PathLike[str],
    config: ml_collections.ConfigDict,
    *,
    allow_config_change: Sequence[str] = (),
  ):
    self.path = pathlib.Path(path).absolute()
    self.config = config
    self.allowed = tuple(name.strip() for name in allow_config_change if name.strip())
    self.changes: dict[str, tuple[Any, Any]] = {}
    self._lock = RunLock(self.path)
    self._checked = False
    self._made: pathlib.Path | None = None  # The outermost folder this run created.
    self._started = False  # record_start was reached.
    self._check_allowed_names()

  def _check_allowed_names(self) -> None:
    fields = flatten(config_json(self.config))
    unknown = [name for name in self.allowed if not any(_covers([name], f) for f in fields)]
    if unknown:
      raise WorkdirError(
        f"--allow_config_change names {', '.join(unknown)}, which the config does not have; "
        "give dotted field names such as num_epochs or pats.noise_scale"
      )

  def __enter__(self) -> RunDirectory:
    return self

  def __exit__(self, *exc_info: Any) -> None:
    self.close()

  def open(self) -> None:
    """Creates the workdir if needed, takes its lock and checks the config (once)."""
    if self._checked:
      return
    if writers.is_writer() and not self.path.is_dir():
      outermost = self.path
      while not outermost.parent.exists():
        outermost = outermost.parent
      try:
        self.path.mkdir(parents=True)
        self._made = outermost
      except FileExistsError:
        pass  # Another process made it first; its lock decides below.
      except OSError as error:
        raise WorkdirError(
          f"cannot create the workdir {self.path} ({error.strerror}); choose a writable --workdir"
        ) from None
    self._claim()

  def _claim(self) -> None:
    error = None
    if writers.is_writer():
      try:
        self._lock.acquire()
        self._compare()
      except WorkdirError as caught:
        self._lock.release()
        error = caught
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
      if failed and error is None:
        raise WorkdirError(f"process 0 could not open the workdir {self.path}; see its log")
    if error is not None:
      raise error
    self._checked = True

  def _compare(self) -> None:
    """Raises WorkdirError when the saved run differs in a field that identifies it."""
    saved_path = self.path / CONFIG_NAME
    if not saved_path.exists() or not has_progress(self.path):
      if has_progress(self.path):
        logging.warning(
          "%s has checkpoints or metrics but no %s: the configs cannot be compared; the "
          "checkpoints' shapes are still checked on restore.",
          self.path,
          CONFIG_NAME,
        )
      self.changes = {}
      return
    try:
      saved = json.loads(saved_path.read_text())
    except (OSError, ValueError) as error:
      raise WorkdirError(
        f"cannot read {saved_path} ({error}); the workdir holds a run whose config is unknown: "
        "use a new --workdir, or restore that file"
      ) from None
    self.changes = config_changes(saved, config_json(self.config))
    refused = {
      field: values
      for field, values in self.changes.items()
      if not _covers(FREE_FIELDS, field) and not _covers(self.allowed, field)
    }
    if refused:
      lines = "\n".join(
        f"  {field}: saved {_show(old)}, new {_show(new)}" for field, (old, new) in refused.items()
      )
      raise WorkdirError(
        f"the workdir {self.path} holds a run with a different config ({saved_path}); "
        f"resuming it with this config would mix two runs. Fields that differ:\n{lines}\n"
        "Nothing in the workdir was changed. Start the new run in a new --workdir, rerun "
        "with the saved values to resume, or, if the change is intended, rerun with "
        f"--allow_config_change={','.join(refused)}"
      )
    for field, (old, new) in self.changes.items():
      level = logging.INFO if _covers(FREE_FIELDS, field) else logging.WARNING
      logging.log(level, "config.%s changed on resume: %r -> %r", field, old, new)

  def record_start(self, *, resumed_from: int | None) -> None:
    """Writes config.json and appends this start to config_history.jsonl (process 0)."""
    self._started = True
    if not writers.is_writer():
      return
    record = {
      "time": _now(),
      "host": socket.gethostname(),
      "pid": os.getpid(),
      "resumed_from": resumed_from,
      "changed": {field: {"saved": old, "new": new} for field, (old, new) in self.changes.items()},
      "allowed": list(self.allowed),
    }
    try:
      writers.write_json(self.path / CONFIG_NAME, config_json(self.config))
      with (self.path / HISTORY_NAME).open("a") as history:
        history.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as error:
      raise WorkdirError(
        f"cannot write to the workdir {self.path} ({error.strerror}); free space or choose a "
        "writable --workdir"
      ) from None

  def close(self) -> None:
    """Releases the lock; removes the workdir again if this run made it but never started."""
    self._lock.release()
    if self._made is not None and not self._started:
      shutil.rmtree(self._made, ignore_errors=True)

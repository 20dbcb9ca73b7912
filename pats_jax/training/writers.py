"""What a run writes into its workdir: config.json, metrics.jsonl, results.json, TensorBoard.

Only process 0 writes. `metrics.jsonl` has one JSON object per logged step (`{"step": t, ...}`)
and per evaluation (`{"step": t, "eval": {...}}`); a resumed run first drops the lines past its
checkpoint's step, so the file reads as if the run had never stopped.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import pathlib
import platform
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from pats_jax.training import validate


class WorkdirWriteError(validate.ConfigError):
  """A file of the run could not be written (full disk, no permission, read-only folder)."""


def _write_failed(path: pathlib.Path, error: OSError) -> WorkdirWriteError:
  return WorkdirWriteError(
    f"could not write {path}: {error.strerror or error}. Free space or fix the folder's "
    "permissions, then rerun the same command: it resumes from the newest checkpoint."
  )


def is_writer() -> bool:
  """True on the process that writes files (process 0)."""
  return jax.process_index() == 0


def _plain(value: Any) -> Any:
  """JSON-friendly Python values (numpy/JAX scalars to floats or ints; NaN kept as null)."""
  if isinstance(value, dict):
    return {str(key): _plain(item) for key, item in value.items()}
  if isinstance(value, list | tuple):
    return [_plain(item) for item in value]
  if isinstance(value, np.ndarray | jax.Array | np.generic):
    value = np.asarray(value).item() if np.ndim(value) == 0 else np.asarray(value).tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def write_json(path: pathlib.Path, payload: Any) -> None:
  """Writes `payload` as indented JSON, atomically (temporary file, then rename)."""
  if not is_writer():
    return
  temporary = path.with_suffix(path.suffix + ".tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_text(json.dumps(_plain(payload), indent=2, sort_keys=True) + "\n")
    temporary.replace(path)
  except OSError as error:
    temporary.unlink(missing_ok=True)
    raise _write_failed(path, error) from error


def environment() -> dict[str, Any]:
  """What ran the job, for results.json: package versions and the devices."""
  versions = {}
  for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers"):
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  return {
    "python": platform.python_version(),
    "packages": versions,
    "backend": jax.default_backend(),
    "device_kind": jax.devices()[0].device_kind,
    "device_count": jax.device_count(),
    "process_count": jax.process_count(),
  }


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The locked config a run wrote to `workdir/config.json`.

  Raises:
    FileNotFoundError: the folder has no config.json (not a train.py workdir).
  """
  path = pathlib.Path(workdir) / "config.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} does not exist: is {workdir} a train.py workdir?")
  return ml_collections.ConfigDict(json.loads(path.read_text()))


class MetricWriter:
  """Appends per-step and per-evaluation records to metrics.jsonl (and TensorBoard).

  Args:
    workdir: the run's folder.
    start_step: the step the run starts or resumes at; older lines past it are dropped.
    tensorboard: also write TensorBoard events (needs `tensorboardX`).
  """

  def __init__(self, workdir: pathlib.Path, *, start_step: int, tensorboard: bool):
    self.path = workdir / "metrics.jsonl"
    self._file = None
    self._tensorboard = None
    if not is_writer():
      return
    try:
      if self.path.exists():
        kept = [
          line
          for line in self.path.read_text().splitlines()
          if line.strip() and json.loads(line)["step"] <= start_step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))
      self._file = self.path.open("a")
    except OSError as error:
      raise _write_failed(self.path, error) from error
    if tensorboard:
      try:
        import tensorboardX
      except ImportError as error:
        raise ImportError(
          "config.tensorboard=True needs tensorboardX: pip install tensorboardX"
        ) from error
      self._tensorboard = tensorboardX.SummaryWriter(
        str(workdir / "tensorboard"), purge_step=start_step + 1
      )

  def write(self, step: int, metrics: dict[str, Any], *, prefix: str = "") -> None:
    """Writes one record; `prefix="eval"` nests the metrics under "eval"."""
    if self._file is None:
      return
    metrics = _plain(metrics)
    record = {"step": step, prefix: metrics} if prefix else {"step": step, **metrics}
    try:
      self._file.write(json.dumps(record, sort_keys=True) + "\n")
      self._file.flush()
    except OSError as error:
      raise _write_failed(self.path, error) from error
    if self._tensorboard is not None:
      for name, value in metrics.items():
        if isinstance(value, int | float):
          self._tensorboard.add_scalar(f"{prefix}/{name}" if prefix else name, value, step)

  def close(self) -> None:
    """Flushes and closes the files."""
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None


class Progress:
  """A tqdm bar over training steps showing loss, examples per second and the ETA."""

  def __init__(self, *, total: int, initial: int, batch_size: int, enabled: bool):
    self._batch_size = batch_size
    self._bar = None
    self._last = (initial, time.perf_counter())
    if enabled and is_writer():
      import tqdm

      self._bar = tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

  def update(self, step: int, loss: float) -> None:
    """Moves the bar to `step` (done) and shows the loss and throughput since the last call."""
    now = time.perf_counter()
    last_step, last_time = self._last
    self._last = (step, now)
    if self._bar is None or step <= last_step:
      return
    throughput = (step - last_step) * self._batch_size / max(now - last_time, 1e-9)
    self._bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{throughput:.1f}", refresh=False)
    self._bar.update(step - self._bar.n)

  def close(self) -> None:
    """Closes the bar."""
    if self._bar is not None:
      self._bar.close()

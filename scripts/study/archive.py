r"""The packed run archive: one JSON line per finished run of a grid.

A run of a sweep writes a workdir (`config.json`, `results.json`, `metrics.jsonl`,
`sensitivity.json`, checkpoints). The archive keeps what the tables and plots need, one JSON
object per line:

  {"run": "<task>/<method>[_ns<scale>][_<variant>]/seed<k>",
   "config": {...config.json...}, "results": {...results.json...},
   "metrics": [{...one line of metrics.jsonl...}, ...], "sensitivity": {...} | null}

Machine paths are left out (the sensitivity's `workdir`, and any absolute path in a config
becomes ""), so an archive can be committed and read anywhere. `python -m
scripts.study.sweep --archive FILE` appends each run as it finishes and counts the runs found
there as finished; the study's tools read archives and sweep roots alike (`load`).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable
from typing import Any

RUN_FILES = {"config": "config.json", "results": "results.json", "sensitivity": "sensitivity.json"}
METRICS_FILE = "metrics.jsonl"
SUFFIX = ".jsonl"


def _portable(value: Any) -> Any:
  """`value` without machine paths: absolute path strings become "", `workdir` keys go."""
  if isinstance(value, dict):
    return {key: _portable(item) for key, item in value.items() if key != "workdir"}
  if isinstance(value, list):
    return [_portable(item) for item in value]
  if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
    return ""
  return value


def _read_json(path: pathlib.Path) -> Any:
  return json.loads(path.read_text()) if path.exists() else None


def pack(workdir: str | os.PathLike[str], name: str) -> dict[str, Any]:
  """The archive record of the finished run in `workdir`, named `name` (its path in a root).

  Raises:
    FileNotFoundError: `workdir` holds no results.json.
  """
  workdir = pathlib.Path(workdir)
  if not (workdir / RUN_FILES["results"]).exists():
    raise FileNotFoundError(f"{workdir} holds no results.json: is it a finished run?")
  record: dict[str, Any] = {"run": name}
  for key, filename in RUN_FILES.items():
    record[key] = _read_json(workdir / filename)
  record["config"] = record["config"] or {}
  metrics = workdir / METRICS_FILE
  lines = metrics.read_text().splitlines() if metrics.exists() else []
  record["metrics"] = [json.loads(line) for line in lines if line.strip()]
  return _portable(record)


def append(path: str | os.PathLike[str], record: dict[str, Any]) -> None:
  """Adds `record` as the last line of the archive `path` (created with its folder)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with path.open("a") as f:
    f.write(json.dumps(record, separators=(",", ":"), allow_nan=True) + "\n")


def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
  """The records of the archive `path`, in file order; a missing file has none.

  Raises:
    ValueError: a line is not a JSON record with `run` and `results`.
  """
  path = pathlib.Path(path)
  if not path.exists():
    return []
  records = []
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as error:
      raise ValueError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    if not isinstance(record, dict) or "run" not in record or "results" not in record:
      raise ValueError(f"{path}:{number}: not a run record (needs `run` and `results`)")
    records.append(record)
  return records


def finished(path: str | os.PathLike[str]) -> set[str]:
  """The names of the runs archived in `path`."""
  return {record["run"] for record in read(path)}


def run_folders(root: str | os.PathLike[str]) -> list[pathlib.Path]:
  """The finished runs (folders with results.json) below a sweep root, sorted."""
  return sorted(path.parent for path in pathlib.Path(root).rglob(RUN_FILES["results"]))


def load(sources: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
  """The run records of archives (`*.jsonl` files) and sweep roots (folders), in order.

  A folder's finished runs are packed as they are (`pack`), each named by its path below the
  folder.

  Raises:
    FileNotFoundError: a source does not exist.
    ValueError: an archive line is not a run record.
  """
  records = []
  for source in sources:
    source = pathlib.Path(source)
    if source.is_dir():
      records += [
        pack(folder, folder.relative_to(source).as_posix()) for folder in run_folders(source)
      ]
    elif source.is_file():
      records += read(source)
    else:
      raise FileNotFoundError(f"{source}: no such archive ({SUFFIX} file) or sweep root (folder)")
  return records

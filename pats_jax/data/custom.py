"""Your own sentence(-pair) data from CSV, TSV or JSON Lines, with a column mapping.

Classification takes any label set (strings or integers); the label ids and their names are
recorded in the returned `TaskSpec`, so pass `label_names=train_spec.label_names` when
loading the dev and test files to keep the same ids. Regression takes real numbers.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
from collections.abc import Iterator, Sequence

import datasets

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

TASK_TYPES = ("classification", "regression")
_RESERVED = ("label", "idx")


def _rows(path: pathlib.Path) -> Iterator[tuple[int, dict[str, object]]]:
  """Yields `(line number, row)`; CSV uses standard quoting, TSV none (as GLUE files)."""
  suffix = path.suffix.lower()
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      if suffix in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(f, start=1):
          if not line.strip():
            continue
          try:
            row = json.loads(line)
          except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
          if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object, got {row!r:.60}")
          yield number, row
        return
      if suffix == ".csv":
        reader = csv.DictReader(f)
      elif suffix == ".tsv":
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
      else:
        raise ValueError(
          f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl (JSON Lines)"
        )
      if reader.fieldnames is None:
        raise ValueError(f"{path}: the file is empty (no header)")
      for row in reader:
        # csv.DictReader puts surplus fields in a list under the key None, and sets absent
        # fields to None.
        extra = len(row.get(None, ()))
        short = sum(value is None for key, value in row.items() if key is not None)
        if extra or short:
          raise ValueError(
            f"{path}, line {reader.line_num}: expected {len(reader.fieldnames)} columns "
            f"(as in the header), found {len(reader.fieldnames) + extra - short}"
          )
        yield reader.line_num, row
  except UnicodeDecodeError as err:
    raise examples.non_utf8_error(path, err) from None


def _int_like(value: object) -> int | None:
  if isinstance(value, bool):
    return int(value)
  if isinstance(value, int):
    return value
  if isinstance(value, float) and value.is_integer():
    return int(value)
  if isinstance(value, str):
    text = value.strip()
    if text.lstrip("-").isdigit():
      return int(text)
  return None


def _label_key(value: object) -> str:
  number = _int_like(value)
  return str(number) if number is not None else str(value).strip()


def _class_ids(
  raw: Sequence[object], lines: Sequence[int], path: pathlib.Path, label_names: Sequence[str] | None
) -> tuple[list[int], tuple[str, ...]]:
  if label_names is None:
    keys = {_label_key(v) for v in raw}
    if all(_int_like(k) is not None for k in keys):
      names = tuple(str(k) for k in sorted(int(k) for k in keys))
    else:
      names = tuple(sorted(keys))
    if len(names) < 2:
      raise ValueError(
        f"{path}: found only the label(s) {list(names)}; classification needs at least two "
        "classes; pass label_names=[...] to name them all"
      )
  else:
    names = tuple(str(name) for name in label_names)
    if len(set(names)) != len(names) or len(names) < 2:
      raise ValueError(f"label_names must be at least two distinct names, got {list(names)}")
  index = {name: i for i, name in enumerate(names)}
  ids = []
  for value, line in zip(raw, lines, strict=True):
    key = _label_key(value)
    if key in index:
      ids.append(index[key])
      continue
    number = _int_like(value)
    if label_names is not None and number is not None and 0 <= number < len(names):
      ids.append(number)  # A class id, when the names themselves are not numbers.
      continue
    raise ValueError(
      f"{path}, line {line}: unknown label {value!r}; expected one of {list(names)}"
      + ("" if label_names is None else " (label_names) or a class id")
    )
  return ids, names


def load_custom(
  path: str | os.PathLike[str],
  *,
  text_column: str,
  label_column: str | None,
  text_pair_column: str | None = None,
  task_type: str = "classification",
  label_names: Sequence[str] | None = None,
  name: str | None = None,
  split: str | None = None,
) -> tuple[datasets.Dataset, TaskSpec]:
  """Loads a CSV, TSV or JSON Lines file of (pairs of) texts with labels.

  Args:
    path: a `.csv` (standard quoting), `.tsv` (no quoting, as GLUE) or `.jsonl` file with a
      header row (CSV/TSV) or one JSON object per line.
    text_column: the column of the (first) text.
    label_column: the column of the label, or None for unlabelled data (labels -1; give
      `label_names` or `task_type="regression"` so the task is known).
    text_pair_column: the column of the second text, for pair tasks.
    task_type: `"classification"` (any label set; ids follow `label_names`, else the sorted
      labels: numerically when all are integers) or `"regression"` (real numbers).
    label_names: the class names in id order; labels may be these names or their ids.
    name: the task name (default: the file name without extension); used in cache keys.
    split: the split name (default: `"train"`).

  Returns:
    `(dataset, spec)`: the examples (columns `text_column`, [`text_pair_column`], `label`,
    `idx`) and a `TaskSpec` with the label names, for `tokenize`, `glue_metrics`, ... .

  Raises:
    ValueError: unknown columns, labels, task type, non-UTF-8 bytes, wrong column counts,
      or no rows.
  """
  path = pathlib.Path(path)
  if task_type not in TASK_TYPES:
    raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")
  if not path.is_file():
    raise FileNotFoundError(f"custom data file {path} not found")
  regression = task_type == "regression"
  if regression and label_names is not None:
    raise ValueError("label_names is for classification; regression labels are numbers")
  text_keys = [text_column] + ([text_pair_column] if text_pair_column else [])
  clash = [key for key in text_keys if key in _RESERVED]
  if clash or len(set(text_keys)) != len(text_keys):
    raise ValueError(f"text columns {text_keys} must be distinct and not named {list(_RESERVED)}")
  wanted = text_keys + ([label_column] if label_column is not None else [])
  texts: list[list[str]] = [[] for _ in text_keys]
  raw_labels: list[object] = []
  lines: list[int] = []
  for line, row in _rows(path):
    missing = [key for key in wanted if key not in row]
    if missing:
      raise ValueError(
        f"{path}, line {line}: no column(s) {missing}; the columns are {sorted(row)}"
      )
    for column, key in zip(texts, text_keys, strict=True):
      value = row[key]
      if not isinstance(value, str):
        raise ValueError(f"{path}, line {line}: {key!r} must be text, got {value!r:.60}")
      column.append(value)
    if label_column is not None:
      value = row[label_column]
      if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{path}, line {line}: empty label in column {label_column!r}")
      raw_labels.append(value)
    lines.append(line)
  if not lines:
    raise ValueError(f"{path}: no rows")
  names: tuple[str, ...] | None = None
  if label_column is None:
    if not regression and label_names is None:
      raise ValueError(
        "unlabelled classification data needs label_names (e.g. the training spec's)"
      )
    labels: list[float] = [examples.UNLABELLED] * len(lines)
    names = None if regression else tuple(str(n) for n in label_names)
  elif regression:
    labels = []
    for value, line in zip(raw_labels, lines, strict=True):
      try:
        number = float(value)
      except (TypeError, ValueError):
        raise ValueError(f"{path}, line {line}: label {value!r} is not a number") from None
      if not math.isfinite(number):
        raise ValueError(f"{path}, line {line}: label {value!r} is not finite")
      labels.append(number)
  else:
    labels, names = _class_ids(raw_labels, lines, path, label_names)
  spec = TaskSpec(
    name=name or path.stem,
    text_keys=(text_column, text_pair_column),
    num_labels=1 if regression else len(names or ()),
    label_names=names,
    best_metric="combined_score" if regression else "accuracy",
  )
  split = split or tasks_lib.TRAIN
  dataset = examples.build_dataset(spec, texts, labels, split=split, origin=str(path))
  return dataset, spec

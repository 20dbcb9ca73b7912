"""The common example format every source produces: `datasets.Dataset` with fixed features.

For a task with text fields `(a, b)` the columns are `a`, `b` (strings), `label` (a
`ClassLabel` id, `float32` for regression, -1 on unlabelled test rows) and `idx` (`int32`,
the row's position in its split), in that order, as in `nyu-mll/glue`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import datasets
import numpy as np

from pats_jax.data.tasks import TaskSpec

UNLABELLED = -1


def features_for(spec: TaskSpec) -> datasets.Features:
  """Returns the `datasets.Features` of a task's examples (text fields, label, idx)."""
  fields: dict[str, datasets.features.FieldType] = {}
  for key in spec.text_keys:
    if key is not None:
      fields[key] = datasets.Value("string")
  if spec.is_regression:
    fields["label"] = datasets.Value("float32")
  else:
    fields["label"] = datasets.ClassLabel(names=list(spec.label_names or ()))
  fields["idx"] = datasets.Value("int32")
  return datasets.Features(fields)


def build_dataset(
  spec: TaskSpec,
  texts: Sequence[Sequence[str]],
  labels: Sequence[float] | np.ndarray,
  *,
  split: str,
  origin: str,
) -> datasets.Dataset:
  """Builds the examples of one split; `idx` is the row position.

  Args:
    spec: the task.
    texts: one sequence of strings per text field of `spec` (one or two).
    labels: class ids (or -1), or floats for regression.
    split: the split name, stored as `dataset.split`.
    origin: where the rows came from (a file, `nyu-mll/glue:sst2/train`, ...), for errors.

  Returns:
    A `datasets.Dataset` with `features_for(spec)`.

  Raises:
    ValueError: the split has no rows, or the columns differ in length.
  """
  keys = [key for key in spec.text_keys if key is not None]
  if len(texts) != len(keys):
    raise ValueError(f"{origin}: expected {len(keys)} text columns {keys}, got {len(texts)}")
  num_rows = len(labels)
  if num_rows == 0:
    raise ValueError(f"{origin}: split {split!r} of task {spec.name!r} has no rows")
  for key, column in zip(keys, texts, strict=True):
    if len(column) != num_rows:
      raise ValueError(
        f"{origin}: column {key!r} has {len(column)} rows but there are {num_rows} labels"
      )
  columns: dict[str, object] = dict(zip(keys, texts, strict=True))
  label_dtype = np.float32 if spec.is_regression else np.int64
  columns["label"] = np.asarray(labels, dtype=label_dtype)
  columns["idx"] = np.arange(num_rows, dtype=np.int32)
  return datasets.Dataset.from_dict(
    columns, features=features_for(spec), split=datasets.NamedSplit(split)
  )


def check_label_range(spec: TaskSpec, labels: np.ndarray, origin: str) -> None:
  """Raises ValueError if a labelled classification split has ids outside `0..num_labels-1`."""
  if spec.is_regression:
    return
  bad = np.unique(labels[(labels < 0) | (labels >= spec.num_labels)])
  if bad.size:
    raise ValueError(
      f"{origin}: labels {bad[:5].tolist()} outside 0..{spec.num_labels - 1} in a labelled split"
    )


def column(dataset: datasets.Dataset, key: str) -> list:
  """One column as a Python list (through Arrow; much faster than iterating the column)."""
  return dataset.select_columns([key])[:][key]


def numpy_column(dataset: datasets.Dataset, key: str) -> np.ndarray:
  """One numeric column as a numpy array."""
  return np.asarray(dataset.select_columns([key]).with_format("numpy")[:][key])


def non_utf8_error(path: pathlib.Path, err: UnicodeDecodeError) -> ValueError:
  """Locates the first invalid byte of a file (line and column) for the error message."""
  raw = path.read_bytes()
  try:
    raw.decode("utf-8")
    where = ""
  except UnicodeDecodeError as located:
    line = raw.count(b"\n", 0, located.start) + 1
    column = located.start - (raw.rfind(b"\n", 0, located.start) + 1) + 1
    bad = raw[located.start : located.end]
    where = f" line {line}, column {column} (byte {bad!r})"
  return ValueError(
    f"{path}:{where} is not valid UTF-8 ({err.reason}); re-encode the file as UTF-8, e.g. "
    "`iconv -f latin1 -t utf-8`, or download it again."
  )

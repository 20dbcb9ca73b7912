"""Reads GLUE from TensorFlow Datasets (`glue/<task>`), an optional extra.

`tensorflow_datasets` is imported only when this source is used. TFDS stores examples in a
hashed order; they are put back in file order by their `idx` field, and, as with the Hub,
`idx` becomes the row position and test labels are -1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import datasets
import numpy as np

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec


def _text(value: object) -> str:
  if isinstance(value, np.ndarray):
    value = value.item()
  if isinstance(value, bytes):
    return value.decode("utf-8")
  if isinstance(value, str):
    return value
  raise TypeError(f"expected bytes or str for a text field, got {type(value).__name__}")


def from_tfds_records(
    spec: TaskSpec,
    split: str,
    records: Iterable[Mapping[str, object]],
    *,
    origin: str,
    label_names: tuple[str, ...] | None = None,
) -> datasets.Dataset:
  """Maps TFDS GLUE examples (as from `tfds.as_numpy`) onto the common example format.

  Args:
    spec: the task.
    split: the canonical split name.
    records: dicts with the task's text fields (bytes or str), `label` and `idx`.
    origin: where they came from, for error messages.
    label_names: the TFDS `ClassLabel` names, checked against the task's when given.

  Returns:
    The split, rows ordered by the TFDS `idx`.

  Raises:
    ValueError: a field is missing, `idx` repeats, or the class names differ.
  """
  if (label_names is not None and spec.label_names is not None
      and tuple(label_names) != spec.label_names):
    raise ValueError(
      f"{origin}: class names {list(label_names)} differ from {list(spec.label_names)}")
  keys = [key for key in spec.text_keys if key is not None]
  rows = []
  for number, record in enumerate(records):
    missing = [key for key in [*keys, "label", "idx"] if key not in record]
    if missing:
      raise ValueError(f"{origin}: example {number} lacks fields {missing}")
    rows.append((int(record["idx"]), [_text(record[k]) for k in keys], record["label"]))
  rows.sort(key=lambda row: row[0])
  order = [row[0] for row in rows]
  if len(set(order)) != len(order):
    raise ValueError(f"{origin}: repeated idx values; the TFDS data is corrupted")
  texts = [[row[1][i] for row in rows] for i in range(len(keys))]
  if tasks_lib.is_test_split(split):
    labels: list[float] = [examples.UNLABELLED] * len(rows)
  elif spec.is_regression:
    labels = [float(row[2]) for row in rows]
  else:
    labels = [int(row[2]) for row in rows]
    bad = sorted({v for v in labels if not 0 <= v < spec.num_labels})
    if bad:
      raise ValueError(f"{origin}: labels {bad[:5]} outside 0..{spec.num_labels - 1}")
  return examples.build_dataset(spec, texts, labels, split=split, origin=origin)


def load_tfds(
    task: str | TaskSpec,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> datasets.Dataset:
  """Loads one split of a GLUE task from TensorFlow Datasets (`tfds.load("glue/<task>")`).

  Args:
    task: GLUE task name.
    split: split name (`"train"`, `"validation"`/`"dev"`, `"test"`, MNLI's matched ones).
    data_dir: the TFDS data folder (default: TFDS' own, `~/tensorflow_datasets`).
    download: let TFDS download and prepare the data when it is not there yet.

  Returns:
    The split in the common example format.

  Raises:
    ImportError: tensorflow-datasets is not installed.
  """
  try:
    import tensorflow_datasets as tfds  # Optional and heavy: imported only when used.
  except ImportError as err:
    raise ImportError(
      "source='tfds' needs tensorflow-datasets and tensorflow: pip install "
      "'pats_jax[tfds]' (or use source='local' with GLUE_DIR, or source='hf')") from err
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  name = f"glue/{spec.name}"
  dataset, info = tfds.load(
    name, split=split, data_dir=None if data_dir is None else os.fspath(data_dir),
    download=download, shuffle_files=False, with_info=True)
  label_feature = info.features["label"]
  label_names = tuple(label_feature.names) if hasattr(label_feature, "names") else None
  return from_tfds_records(
    spec, split, tfds.as_numpy(dataset), origin=f"tfds:{name}/{split}", label_names=label_names)

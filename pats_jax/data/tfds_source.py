"""Reads GLUE from TensorFlow Datasets (`glue/<task>`), an optional extra.

`tensorflow_datasets` is imported only when this source is used. The TFDS `glue` builder
uses the `nyu-mll/glue` field names and class orders (the Hub copy is a port of it), stores
text as UTF-8 bytes, gives test rows the label -1 and numbers rows by their line in the
source file (`idx`; MRPC's train and dev `idx` count lines of `msr_paraphrase_train.txt`, so
they have gaps). Its records are stored in a hashed order; they are put back in file order by
`idx`, and, as with the Hub, `idx` then becomes the row position and test labels are -1.

References:
  TensorFlow Datasets, `glue` builder:
  https://www.tensorflow.org/datasets/catalog/glue
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import datasets
import numpy as np

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec


def _text(value: object, *, origin: str, key: str) -> str:
  if isinstance(value, np.ndarray) and value.ndim == 0:
    value = value.item()
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError as err:
      raise ValueError(f"{origin}: field {key!r} holds bytes that are not UTF-8: {err}") from err
  if isinstance(value, str):
    return value
  raise TypeError(
    f"{origin}: expected bytes or str in text field {key!r}, got {type(value).__name__}"
  )


def from_tfds_columns(
  spec: TaskSpec,
  split: str,
  columns: Mapping[str, Sequence[object] | np.ndarray],
  *,
  origin: str,
  label_names: tuple[str, ...] | None = None,
) -> datasets.Dataset:
  """Maps a whole TFDS GLUE split (as from `tfds.load(..., batch_size=-1)`) onto the common format.

  Args:
    spec: the task.
    split: the canonical split name.
    columns: equal-length columns: the task's text fields (bytes or str), `label` (class id,
      float for STS-B, -1 on test rows) and `idx` (the row's line in the source file).
    origin: where they came from, for error messages.
    label_names: the TFDS `ClassLabel` names, checked against the task's when given.

  Returns:
    The split, rows ordered by the TFDS `idx`.

  Raises:
    ValueError: a field is missing, `idx` repeats, a label is out of range or the class names
      differ.
  """
  if (
    label_names is not None
    and spec.label_names is not None
    and tuple(label_names) != spec.label_names
  ):
    raise ValueError(
      f"{origin}: class names {list(label_names)} differ from {list(spec.label_names)}; "
      "label ids would be misread"
    )
  keys = [key for key in spec.text_keys if key is not None]
  missing = [key for key in [*keys, "label", "idx"] if key not in columns]
  if missing:
    raise ValueError(
      f"{origin}: fields {missing} missing (has {sorted(columns)}); expected the features "
      f"of the TFDS builder glue/{spec.name}"
    )
  idx = np.asarray(columns["idx"], dtype=np.int64).reshape(-1)
  order = np.argsort(idx, kind="stable")
  if np.any(idx[order][1:] == idx[order][:-1]):
    raise ValueError(f"{origin}: repeated idx values; the TFDS data is corrupted")
  texts = []
  for key in keys:
    column = columns[key]
    if len(column) != idx.size:
      raise ValueError(f"{origin}: field {key!r} has {len(column)} rows, idx has {idx.size}")
    texts.append([_text(column[i], origin=origin, key=key) for i in order])
  if tasks_lib.is_test_split(split):
    labels: np.ndarray = np.full(idx.size, examples.UNLABELLED, dtype=np.int64)
  else:
    labels = np.asarray(columns["label"]).reshape(-1)[order]
    if spec.is_regression:
      labels = labels.astype(np.float32)
    examples.check_label_range(spec, labels, origin)
  return examples.build_dataset(spec, texts, labels, split=split, origin=origin)


def from_tfds_records(
  spec: TaskSpec,
  split: str,
  records: Iterable[Mapping[str, object]],
  *,
  origin: str,
  label_names: tuple[str, ...] | None = None,
) -> datasets.Dataset:
  """Maps TFDS GLUE examples one by one (as from `tfds.as_numpy(dataset)`) onto the common format.

  Args:
    spec: the task.
    split: the canonical split name.
    records: dicts with the task's text fields (bytes or str), `label` and `idx`.
    origin: where they came from, for error messages.
    label_names: the TFDS `ClassLabel` names, checked against the task's when given.

  Returns:
    The split, rows ordered by the TFDS `idx` (see `from_tfds_columns`).

  Raises:
    ValueError: a field is missing, `idx` repeats, or the class names differ.
  """
  fields = [key for key in spec.text_keys if key is not None] + ["label", "idx"]
  columns: dict[str, list[object]] = {key: [] for key in fields}
  for number, record in enumerate(records):
    missing = [key for key in fields if key not in record]
    if missing:
      raise ValueError(f"{origin}: example {number} lacks fields {missing}")
    for key in fields:
      columns[key].append(record[key])
  return from_tfds_columns(spec, split, columns, origin=origin, label_names=label_names)


def load_tfds(
  task: str | TaskSpec,
  split: str,
  *,
  data_dir: str | os.PathLike[str] | None = None,
  download: bool = True,
) -> datasets.Dataset:
  """Loads one split of a GLUE task from TensorFlow Datasets (`tfds.load("glue/<task>")`).

  The split is read in one piece (`batch_size=-1`), which is much faster than iterating the
  examples one by one; GLUE's largest split (MNLI train) is about 80 MB of text.

  Args:
    task: GLUE task name.
    split: split name (`"train"`, `"validation"`/`"dev"`, `"test"`; MNLI's
      `"validation_matched"`, ...), the same names as TFDS' `glue/mnli`.
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
      "'pats_jax[tfds]' (or use source='local' with GLUE_DIR, or source='hf')"
    ) from err
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  name = f"glue/{spec.name}"
  tensors, info = tfds.load(
    name,
    split=split,
    data_dir=None if data_dir is None else os.fspath(data_dir),
    download=download,
    batch_size=-1,
    with_info=True,
  )
  label_feature = info.features["label"]
  label_names = tuple(label_feature.names) if hasattr(label_feature, "names") else None
  return from_tfds_columns(
    spec, split, tfds.as_numpy(tensors), origin=f"tfds:{name}/{split}", label_names=label_names
  )

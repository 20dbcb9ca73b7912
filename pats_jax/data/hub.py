"""Reads GLUE from the Hugging Face Hub (`nyu-mll/glue`) with `datasets.load_dataset`.

The Hub copy already uses our field names and label orders; this module checks them and
normalises two differences from the GLUE TSVs: `idx` becomes the row position (MRPC's
train/dev `idx` on the Hub counts rows of `msr_paraphrase_train.txt`, so it has gaps), and
test labels are -1 (the Hub's MRPC test split carries the labels of `msr_paraphrase_test.txt`,
which GLUE withholds).
"""

from __future__ import annotations

import os

import datasets

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

HUB_DATASET = "nyu-mll/glue"


def from_hub_dataset(
  spec: TaskSpec, split: str, dataset: datasets.Dataset, *, origin: str
) -> datasets.Dataset:
  """Maps a `nyu-mll/glue`-style split onto the common example format.

  Args:
    spec: the task.
    split: the canonical split name (see `tasks.canonical_split`).
    dataset: the split as loaded (columns: the task's text fields, `label`, `idx`).
    origin: a description of where it came from, for error messages.

  Returns:
    The split with `examples.features_for(spec)`, rows in the given order.

  Raises:
    ValueError: a field is missing, the class names differ from the task's, or a label is
      out of range.
  """
  keys = [key for key in spec.text_keys if key is not None]
  missing = [key for key in [*keys, "label"] if key not in dataset.column_names]
  if missing:
    raise ValueError(
      f"{origin}: columns {missing} missing (has {dataset.column_names}); expected the "
      f"fields of {HUB_DATASET} config {spec.name!r}"
    )
  label_feature = dataset.features["label"]
  if (
    isinstance(label_feature, datasets.ClassLabel)
    and spec.label_names is not None
    and tuple(label_feature.names) != spec.label_names
  ):
    raise ValueError(
      f"{origin}: class names {label_feature.names} differ from {list(spec.label_names)}; "
      "label ids would be misread"
    )
  texts = [examples.column(dataset, key) for key in keys]
  if tasks_lib.is_test_split(split):
    labels = [examples.UNLABELLED] * dataset.num_rows
  else:
    labels = examples.numpy_column(dataset, "label")
    examples.check_label_range(spec, labels, origin)
  return examples.build_dataset(spec, texts, labels, split=split, origin=origin)


def load_hub(
  task: str | TaskSpec,
  split: str,
  *,
  path: str | os.PathLike[str] = HUB_DATASET,
  **load_kwargs: object,
) -> datasets.Dataset:
  """Loads one split of a GLUE task with `datasets.load_dataset(path, config, split=...)`.

  Args:
    task: GLUE task name.
    split: split name (`"train"`, `"validation"`/`"dev"`, `"test"`, MNLI's matched ones).
    path: the Hub dataset id, or a local snapshot of it (a folder with the same
      `<config>/<split>-*.parquet` files and README, e.g. from
      `huggingface-cli download nyu-mll/glue --repo-type dataset --local-dir DIR`).
    **load_kwargs: passed to `datasets.load_dataset` (`cache_dir`, `revision`, ...).

  Returns:
    The split in the common example format.

  Raises:
    ConnectionError: the Hub could not be reached and no cached copy exists.
  """
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  origin = f"{os.fspath(path)}:{spec.name}/{split}"
  try:
    dataset = datasets.load_dataset(os.fspath(path), spec.name, split=split, **load_kwargs)
  except (OSError, datasets.exceptions.DatasetNotFoundError) as err:
    raise ConnectionError(
      f"could not load {origin} with datasets.load_dataset ({type(err).__name__}: {err}); "
      "without network access, read a local glue_data folder instead (data_dir= or the "
      "GLUE_DIR environment variable)"
    ) from err
  return from_hub_dataset(spec, split, dataset, origin=origin)

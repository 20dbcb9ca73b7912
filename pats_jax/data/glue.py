"""`load_glue`: one entry point over the local, Hub and TFDS sources of GLUE."""

from __future__ import annotations

import os
import pathlib

import datasets

from pats_jax.data import hub, local, tfds_source
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

SOURCES = ("auto", "local", "hf", "tfds")


def candidate_glue_dirs() -> list[pathlib.Path]:
  """Folders searched by `source="auto"` when neither data_dir nor $GLUE_DIR is set: ./glue_data."""
  return [pathlib.Path.cwd() / "glue_data"]


def resolve_source(
  task: str | TaskSpec,
  split: str,
  *,
  source: str = "auto",
  data_dir: str | os.PathLike[str] | None = None,
) -> tuple[str, pathlib.Path | None]:
  """Decides which source `load_glue` reads, and from which folder.

  `"auto"` picks `"local"` when `data_dir` is given or `$GLUE_DIR` is set (the folder must
  hold the split), else when one of `candidate_glue_dirs()` holds the split's file, else
  `"hf"`.

  Args:
    task: GLUE task name.
    split: split name.
    source: `"auto"`, `"local"`, `"hf"` or `"tfds"`.
    data_dir: a glue_data folder (local), a snapshot of nyu-mll/glue (hf) or a TFDS data
      folder (tfds).

  Returns:
    `(source, folder)`; folder is None when the source's own default applies.
  """
  if source not in SOURCES:
    raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
  folder = None if data_dir is None else pathlib.Path(data_dir)
  if source != "auto":
    if source == "local" and folder is None:
      folder = _configured_or_found(task, split)
      if folder is None:
        raise FileNotFoundError(
          f"source='local' needs a glue_data folder: pass data_dir= or set "
          f"${local.GLUE_DIR_ENV}; searched {[str(p) for p in candidate_glue_dirs()]}"
        )
    return source, folder
  if folder is not None:
    return "local", folder
  found = _configured_or_found(task, split)
  if found is not None:
    return "local", found
  return "hf", None


def _configured_or_found(task: str | TaskSpec, split: str) -> pathlib.Path | None:
  env = os.environ.get(local.GLUE_DIR_ENV)
  if env:
    path = pathlib.Path(env)
    if not path.is_dir():
      raise FileNotFoundError(f"${local.GLUE_DIR_ENV}={env} is not a folder")
    return path
  for path in candidate_glue_dirs():
    if local.split_path(path, task, split).is_file():
      return path
  return None


def load_glue(
  task: str | TaskSpec,
  split: str,
  *,
  source: str = "auto",
  data_dir: str | os.PathLike[str] | None = None,
) -> datasets.Dataset:
  """Loads one split of a GLUE task, with the same fields and values from every source.

  Columns: the task's text fields as in `nyu-mll/glue` (`sentence`; `sentence1`/`sentence2`;
  `question1`/`question2`; `premise`/`hypothesis`; `question`/`sentence`), `label` (class id
  in the `nyu-mll/glue` order, float for STS-B, -1 on test splits) and `idx` (row position).

  Args:
    task: `"cola"`, `"sst2"`, `"mrpc"`, `"qqp"`, `"stsb"`, `"mnli"`, `"qnli"`, `"rte"`,
      `"wnli"` or `"ax"` (GLUE spellings such as `"SST-2"` work too).
    split: `"train"`, `"validation"` (or `"dev"`), `"test"`; MNLI: `"validation_matched"`,
      `"validation_mismatched"`, `"test_matched"`, `"test_mismatched"`; AX: `"test"`.
    source: `"local"` (a glue_data folder), `"hf"` (`nyu-mll/glue` on the Hub), `"tfds"`
      (TensorFlow Datasets, needs the `tfds` extra) or `"auto"` (see `resolve_source`).
    data_dir: the local glue_data folder; with `"hf"`, a local snapshot of nyu-mll/glue;
      with `"tfds"`, the TFDS data folder.

  Returns:
    A `datasets.Dataset`.
  """
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  chosen, folder = resolve_source(spec, split, source=source, data_dir=data_dir)
  if chosen == "local":
    return local.load_local(spec, split, folder)
  if chosen == "hf":
    return hub.load_hub(spec, split, path=hub.HUB_DATASET if folder is None else folder)
  return tfds_source.load_tfds(spec, split, data_dir=folder)

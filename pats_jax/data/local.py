"""Reads GLUE from a folder in the standard `glue_data` layout (`download_glue_data.py`).

Layout: `<root>/<Task>/{train,dev,test}.tsv` with task folders `CoLA`, `SST-2`, `MRPC`,
`QQP`, `STS-B`, `MNLI`, `QNLI`, `RTE`, `WNLI`; MNLI has `dev_matched.tsv`,
`dev_mismatched.tsv`, `test_matched.tsv`, `test_mismatched.tsv`; the diagnostic set (AX) is
`diagnostic/diagnostic.tsv`.

Quirks handled: CoLA's train and dev files have no header (columns: source, label, original
mark, sentence); MRPC's files start with a UTF-8 byte-order mark; fields may contain stray
double quotes, so quoting is off (`csv.QUOTE_NONE`), as in the GLUE loaders of TFDS and
Hugging Face. Rows keep their file order and `idx` is the row position, which equals the
`index` column of the test files.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pathlib

import datasets

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

GLUE_DIR_ENV = "GLUE_DIR"

TASK_FOLDERS = {
  "cola": "CoLA",
  "sst2": "SST-2",
  "mrpc": "MRPC",
  "qqp": "QQP",
  "stsb": "STS-B",
  "mnli": "MNLI",
  "qnli": "QNLI",
  "rte": "RTE",
  "wnli": "WNLI",
  "ax": "diagnostic",
}

_SPLIT_FILES = {
  tasks_lib.TRAIN: "train.tsv",
  tasks_lib.VALIDATION: "dev.tsv",
  tasks_lib.TEST: "test.tsv",
  tasks_lib.VALIDATION_MATCHED: "dev_matched.tsv",
  tasks_lib.VALIDATION_MISMATCHED: "dev_mismatched.tsv",
  tasks_lib.TEST_MATCHED: "test_matched.tsv",
  tasks_lib.TEST_MISMATCHED: "test_mismatched.tsv",
}


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Where the fields of one GLUE TSV are.

  Columns are header names, or 0-based positions for a headerless file (`num_columns` set).
  """

  text_columns: tuple[str | int, ...]
  label_column: str | int | None
  num_columns: int | None = None  # Only for headerless files.


# (text columns, label column) of labelled files; test files have the same text columns.
_COLUMNS: dict[str, tuple[tuple[str, ...], str | None]] = {
  "sst2": (("sentence",), "label"),
  "mrpc": (("#1 String", "#2 String"), "Quality"),
  "qqp": (("question1", "question2"), "is_duplicate"),
  "stsb": (("sentence1", "sentence2"), "score"),
  "mnli": (("sentence1", "sentence2"), "gold_label"),
  "qnli": (("question", "sentence"), "label"),
  "rte": (("sentence1", "sentence2"), "label"),
  "wnli": (("sentence1", "sentence2"), "label"),
  "ax": (("sentence1", "sentence2"), None),
}


def _layout(spec: TaskSpec, split: str) -> _Layout:
  test = tasks_lib.is_test_split(split)
  if spec.name == "cola":
    if test:
      return _Layout(("sentence",), None)
    return _Layout((3,), 1, num_columns=4)
  text_columns, label_column = _COLUMNS[spec.name]
  return _Layout(text_columns, None if test else label_column)


def split_path(root: str | os.PathLike[str], task: str | TaskSpec, split: str) -> pathlib.Path:
  """Returns the TSV file of a task's split under a `glue_data` folder."""
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  folder = pathlib.Path(root) / TASK_FOLDERS[spec.name]
  if spec.name == "ax":
    return folder / "diagnostic.tsv"
  return folder / _SPLIT_FILES[split]


def _decode_label(spec: TaskSpec, value: str, where: str) -> float | int:
  if spec.is_regression:
    try:
      return float(value)
    except ValueError:
      raise ValueError(f"{where}: label {value!r} of task {spec.name!r} is not a number") from None
  names = spec.label_names or ()
  if value in names:
    return names.index(value)
  if value.strip().lstrip("-").isdigit() and 0 <= int(value) < len(names):
    return int(value)
  raise ValueError(
    f"{where}: unknown label {value!r} for task {spec.name!r}; expected one of "
    f"{list(names)} or a class id in 0..{len(names) - 1}"
  )


def _read_rows(path: pathlib.Path, layout: _Layout) -> tuple[list[list[str]], list[int]]:
  """Reads a TSV; returns the rows as selected columns (texts then label) and line numbers."""
  rows: list[list[str]] = []
  lines: list[int] = []
  try:
    with open(path, encoding="utf-8-sig", newline="") as f:
      reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
      if layout.num_columns is None:
        header = next(reader, None)
        if header is None:
          raise ValueError(f"{path}: the file is empty (no header, no rows)")
        wanted = [*layout.text_columns]
        if layout.label_column is not None:
          wanted.append(layout.label_column)
        missing = [name for name in wanted if name not in header]
        if missing:
          raise ValueError(
            f"{path}: the header {header} lacks columns {missing}; is this file in the "
            "standard glue_data layout (download_glue_data.py)?"
          )
        positions = [header.index(name) for name in wanted]
        num_columns = len(header)
        shape = f"{num_columns} tab-separated columns (as in the header)"
      else:
        positions = [*layout.text_columns]
        if layout.label_column is not None:
          positions.append(layout.label_column)
        num_columns = layout.num_columns
        shape = f"{num_columns} tab-separated columns (this file has no header)"
      for row in reader:
        if len(row) != num_columns:
          raise ValueError(
            f"{path}, line {reader.line_num}: expected {shape}, found {len(row)}. A tab may "
            "be missing or extra in this row; the file may be truncated or edited."
          )
        rows.append([row[p] for p in positions])
        lines.append(reader.line_num)
  except UnicodeDecodeError as err:
    raise examples.non_utf8_error(path, err) from None
  return rows, lines


def load_local(
  task: str | TaskSpec, split: str, data_dir: str | os.PathLike[str]
) -> datasets.Dataset:
  """Loads one split of a GLUE task from a `glue_data` folder.

  Args:
    task: GLUE task name (`"cola"`, `"SST-2"`, `"mnli"`, `"ax"`, ...).
    split: `"train"`, `"validation"`/`"dev"`, `"test"`; MNLI: `"validation_matched"`,
      `"validation_mismatched"`, `"test_matched"`, `"test_mismatched"` (or `dev_matched`, ...).
    data_dir: the folder that holds `CoLA/`, `SST-2/`, ... .

  Returns:
    A `datasets.Dataset` with the task's text fields, `label` and `idx` (see `examples`).

  Raises:
    FileNotFoundError: the split's file is missing.
    ValueError: a row has the wrong number of columns, a label is unknown, the file is not
      UTF-8, or the split has no rows.
  """
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  path = split_path(data_dir, spec, split)
  if not path.is_file():
    raise FileNotFoundError(
      f"GLUE file {path} not found for task {spec.name!r} split {split!r}. Point data_dir "
      f"(or ${GLUE_DIR_ENV}) at a folder in the standard glue_data layout, as written by "
      "download_glue_data.py, or use source='hf' to download nyu-mll/glue."
    )
  layout = _layout(spec, split)
  rows, lines = _read_rows(path, layout)
  if not rows:
    raise ValueError(f"{path}: split {split!r} of task {spec.name!r} has no rows")
  num_texts = len(layout.text_columns)
  texts = [[row[i] for row in rows] for i in range(num_texts)]
  if layout.label_column is None:
    labels = [examples.UNLABELLED] * len(rows)
  else:
    labels = [
      _decode_label(spec, row[num_texts], f"{path}, line {line}")
      for row, line in zip(rows, lines, strict=True)
    ]
  return examples.build_dataset(spec, texts, labels, split=split, origin=str(path))

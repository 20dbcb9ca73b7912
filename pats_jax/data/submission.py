"""Test-set predictions in the GLUE submission format (gluebenchmark.com).

One TSV per task and test split, named as the GLUE server expects (`CoLA.tsv`, `SST-2.tsv`,
`MRPC.tsv`, `STS-B.tsv`, `QQP.tsv`, `MNLI-m.tsv`, `MNLI-mm.tsv`, `QNLI.tsv`, `RTE.tsv`,
`WNLI.tsv`, `AX.tsv`), each with a header `index\tprediction` and one row per test example
in index order. MNLI, QNLI, RTE and AX take label strings (`entailment`, ...), STS-B a score
in [0, 5], the others class ids (0/1). Zip the eleven files together to submit.
"""

from __future__ import annotations

import logging
import os
import pathlib

import numpy as np

from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

SUBMISSION_FILES = {
  ("cola", "test"): "CoLA.tsv",
  ("sst2", "test"): "SST-2.tsv",
  ("mrpc", "test"): "MRPC.tsv",
  ("stsb", "test"): "STS-B.tsv",
  ("qqp", "test"): "QQP.tsv",
  ("mnli", "test_matched"): "MNLI-m.tsv",
  ("mnli", "test_mismatched"): "MNLI-mm.tsv",
  ("qnli", "test"): "QNLI.tsv",
  ("rte", "test"): "RTE.tsv",
  ("wnli", "test"): "WNLI.tsv",
  ("ax", "test"): "AX.tsv",
}

# Rows of each GLUE test split (the server rejects files of another length).
OFFICIAL_TEST_ROWS = {
  ("cola", "test"): 1063,
  ("sst2", "test"): 1821,
  ("mrpc", "test"): 1725,
  ("stsb", "test"): 1379,
  ("qqp", "test"): 390965,
  ("mnli", "test_matched"): 9796,
  ("mnli", "test_mismatched"): 9847,
  ("qnli", "test"): 5463,
  ("rte", "test"): 3000,
  ("wnli", "test"): 146,
  ("ax", "test"): 1104,
}

STRING_LABEL_TASKS = frozenset({"mnli", "qnli", "rte", "ax"})

STSB_RANGE = (0.0, 5.0)


def _formatted(spec: TaskSpec, predictions: np.ndarray) -> list[str]:
  if spec.is_regression:
    values = predictions.reshape(predictions.shape[0], -1)[:, 0].astype(np.float64)
    if not np.all(np.isfinite(values)):
      raise ValueError(f"{spec.name}: predictions hold NaN or infinity")
    return [f"{v:.3f}" for v in np.clip(values, *STSB_RANGE)]
  if predictions.ndim == 2:
    predictions = predictions.argmax(axis=-1)
  if predictions.dtype.kind == "f" and not np.all(predictions == np.round(predictions)):
    raise ValueError(f"{spec.name}: predictions must be class ids or [n, num_labels] logits")
  ids = predictions.astype(np.int64)
  if ids.size and (ids.min() < 0 or ids.max() >= spec.num_labels):
    raise ValueError(
      f"{spec.name}: class ids must be in 0..{spec.num_labels - 1}, got {ids.min()}..{ids.max()}"
    )
  if spec.name in STRING_LABEL_TASKS:
    names = spec.label_names or ()
    return [names[i] for i in ids]
  return [str(i) for i in ids]


def write_glue_submission(
  task: str | TaskSpec,
  split: str,
  predictions: object,
  out_dir: str | os.PathLike[str],
  *,
  indices: object = None,
  check_count: bool = False,
) -> pathlib.Path:
  """Writes one GLUE submission file.

  Args:
    task: the GLUE task (`"ax"` for the diagnostic set, predicted with an MNLI model).
    split: the test split (`"test"`; MNLI `"test_matched"` or `"test_mismatched"`).
    predictions: `[n]` class ids, `[n, num_labels]` logits, or `[n]` STS-B scores (clipped
      to [0, 5]).
    out_dir: the folder to write into (created if needed).
    indices: `[n]` the examples' `idx` (e.g. gathered from `eval_batches`), in the order of
      `predictions`; default `0..n-1`. They must be a permutation of `0..n-1`.
    check_count: raise when the number of rows is not the official one (by default a
      warning is logged: partial or synthetic test sets are fine to write).

  Returns:
    The path of the file written.

  Raises:
    ValueError: not a GLUE test split, bad indices or predictions, or (with `check_count`)
      not the official number of rows.
  """
  spec = tasks_lib.get_task(task)
  split = tasks_lib.canonical_split(spec, split)
  key = (spec.name, split)
  if key not in SUBMISSION_FILES:
    raise ValueError(
      f"no GLUE submission file for task {spec.name!r} split {split!r}; the test splits are "
      f"{sorted(SUBMISSION_FILES)}"
    )
  preds = np.asarray(predictions)
  if preds.ndim not in (1, 2) or preds.shape[0] == 0:
    raise ValueError(f"{spec.name}: predictions must be a non-empty [n] or [n, k] array")
  n = preds.shape[0]
  order = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
  if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
    raise ValueError(
      f"{spec.name}/{split}: indices must be a permutation of 0..{n - 1} (one per prediction, "
      "padding rows removed)"
    )
  if n != OFFICIAL_TEST_ROWS[key]:
    message = (
      f"{spec.name}/{split}: {n} predictions, but the GLUE test split has "
      f"{OFFICIAL_TEST_ROWS[key]} rows; the GLUE server will reject this file"
    )
    if check_count:
      raise ValueError(message)
    logging.warning(message)
  values = _formatted(spec, preds)
  by_index = [""] * n
  for i, value in zip(order.tolist(), values, strict=True):
    by_index[i] = value
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  path = out / SUBMISSION_FILES[key]
  lines = ["index\tprediction", *(f"{i}\t{v}" for i, v in enumerate(by_index))]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path

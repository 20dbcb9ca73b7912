"""GLUE metrics as the benchmark defines them (scikit-learn / scipy).

| task            | metrics                                     | task score (GLUE average) |
|-----------------|---------------------------------------------|---------------------------|
| CoLA, AX        | Matthews correlation                        | Matthews correlation      |
| STS-B           | Pearson and Spearman correlation            | their mean                |
| MRPC, QQP       | F1 (positive class 1) and accuracy          | their mean                |
| MNLI            | accuracy, on matched and mismatched dev     | mean of the two           |
| SST-2, QNLI, RTE, WNLI | accuracy                             | accuracy                  |

The GLUE average is the unweighted mean of the task scores (AX is not part of it). Scores
are fractions (multiply by 100 for the leaderboard's scale).

References:
  Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
  Understanding", ICLR 2019, Section 3 and Table 1. https://arxiv.org/abs/1804.07461
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import scipy.stats
from sklearn import metrics as skm

from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec


def _as_arrays(
  spec: TaskSpec, predictions: object, labels: object
) -> tuple[np.ndarray, np.ndarray]:
  preds = np.asarray(predictions)
  gold = np.asarray(labels)
  if spec.is_regression:
    preds = preds.reshape(preds.shape[0], -1)[:, 0] if preds.ndim == 2 else preds
    preds = preds.astype(np.float64)
    gold = gold.astype(np.float64)
  else:
    if preds.ndim == 2:  # Logits or probabilities.
      preds = preds.argmax(axis=-1)
    if preds.dtype.kind == "f" and not np.all(preds == np.round(preds)):
      raise ValueError(
        f"{spec.name}: predictions must be class ids (or [n, num_labels] logits), got "
        "non-integer floats"
      )
    preds = preds.astype(np.int64)
    gold = gold.astype(np.int64)
    if np.any(gold < 0):
      raise ValueError(
        f"{spec.name}: labels hold -1 (an unlabelled test split); metrics need labels"
      )
  if preds.ndim != 1 or preds.shape != gold.shape:
    raise ValueError(
      f"{spec.name}: predictions {preds.shape} and labels {gold.shape} must be equal 1-D shapes"
    )
  if preds.shape[0] == 0:
    raise ValueError(f"{spec.name}: no examples to score")
  return preds, gold


def _correlation(fn, preds: np.ndarray, gold: np.ndarray) -> float:
  """A correlation, 0.0 where it is undefined (constant predictions or labels)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    value = float(fn(preds, gold)[0])
  return 0.0 if math.isnan(value) else value


def glue_metrics(task: str | TaskSpec, predictions: object, labels: object) -> dict[str, float]:
  """Computes a task's metrics.

  Args:
    task: a GLUE task name or a `TaskSpec` (custom tasks: accuracy and F1 for
      classification, like STS-B for regression).
    predictions: `[n]` class ids (or `[n, num_labels]` logits), or `[n]` real numbers for
      regression.
    labels: `[n]` gold class ids or real numbers.

  Returns:
    CoLA/AX: `matthews_correlation`; STS-B (and regression): `pearson`, `spearmanr`,
    `combined_score` (their mean); MRPC/QQP: `accuracy`, `f1`, `combined_score` (their
    mean); others: `accuracy` (custom classification adds `f1` (binary) or `macro_f1`).
    Correlations are 0.0 where undefined (constant predictions).
  """
  spec = tasks_lib.get_task(task)
  preds, gold = _as_arrays(spec, predictions, labels)
  glue = tasks_lib.GLUE_TASKS.get(spec.name) == spec
  if spec.is_regression:
    pearson = _correlation(scipy.stats.pearsonr, preds, gold)
    spearman = _correlation(scipy.stats.spearmanr, preds, gold)
    return {"pearson": pearson, "spearmanr": spearman, "combined_score": (pearson + spearman) / 2}
  if glue and spec.name in ("cola", "ax"):
    return {"matthews_correlation": float(skm.matthews_corrcoef(gold, preds))}
  accuracy = float(skm.accuracy_score(gold, preds))
  if glue and spec.name in ("mrpc", "qqp"):
    f1 = float(skm.f1_score(gold, preds, pos_label=1, average="binary", zero_division=0))
    return {"accuracy": accuracy, "f1": f1, "combined_score": (accuracy + f1) / 2}
  if glue:
    return {"accuracy": accuracy}
  if spec.num_labels == 2:
    return {
      "accuracy": accuracy,
      "f1": float(skm.f1_score(gold, preds, average="binary", zero_division=0)),
    }
  return {
    "accuracy": accuracy,
    "macro_f1": float(
      skm.f1_score(
        gold, preds, labels=list(range(spec.num_labels)), average="macro", zero_division=0
      )
    ),
  }


def metric_names(task: str | TaskSpec) -> tuple[str, ...]:
  """The names of the metrics `glue_metrics` reports for `task`, in its order.

  They are read off `glue_metrics` itself, scored on two stand-in examples (labels 0 and 1,
  predicted exactly), so the names have one source.

  Args:
    task: a GLUE task name or a `TaskSpec`.

  Returns:
    E.g. `("accuracy",)` for RTE, `("accuracy", "f1", "combined_score")` for MRPC.
  """
  spec = tasks_lib.get_task(task)
  labels = [0.0, 1.0] if spec.is_regression else [0, 1]
  return tuple(glue_metrics(spec, labels, labels))


def _require(task: str, metrics: Mapping[str, float], *keys: str) -> list[float]:
  missing = [key for key in keys if key not in metrics]
  if missing:
    raise ValueError(f"results for {task!r} lack {missing} (have {sorted(metrics)})")
  return [float(metrics[key]) for key in keys]


def task_score(task: str, metrics: Mapping[str, float]) -> float:
  """The single GLUE score of a task: its metric, or the mean of its two metrics.

  Args:
    task: a GLUE task name (not AX, not MNLI: see `glue_average` for MNLI).
    metrics: the task's `glue_metrics` result.

  Returns:
    CoLA: Matthews correlation; STS-B: mean of Pearson and Spearman; MRPC/QQP: mean of F1
    and accuracy; the others: accuracy.
  """
  spec = tasks_lib.get_task(task)
  if spec.name == "cola":
    return _require(task, metrics, "matthews_correlation")[0]
  if spec.name == "stsb":
    return float(np.mean(_require(task, metrics, "pearson", "spearmanr")))
  if spec.name in ("mrpc", "qqp"):
    return float(np.mean(_require(task, metrics, "f1", "accuracy")))
  if spec.name == "ax":
    raise ValueError("AX (the diagnostic set) is not part of the GLUE average")
  return _require(task, metrics, "accuracy")[0]


_MNLI_MATCHED = {"mnli", "mnlim", "mnlimatched", "mnlivalidationmatched"}
_MNLI_MISMATCHED = {"mnlimm", "mnlimismatched", "mnlivalidationmismatched"}


def glue_average(results_by_task: Mapping[str, Mapping[str, float]]) -> float:
  r"""The GLUE average: the unweighted mean of the task scores of the given tasks.

  $$\text{GLUE} = \frac{1}{|T|} \sum_{t \in T} \text{score}_t,$$
  where a task with two metrics scores their mean (`task_score`), and MNLI scores the mean of
  its matched and mismatched accuracies.

  Args:
    results_by_task: task name -> its `glue_metrics` dict. MNLI may be given as `"mnli"`
      (matched; it may also hold `accuracy_mismatched`) together with `"mnli_mismatched"`
      (or `"mnli-mm"`); `"ax"` entries are ignored.

  Returns:
    The average, as a fraction.

  Raises:
    ValueError: no task, an unknown task, or a result lacking its metric.
  """
  scores: list[float] = []
  matched: float | None = None
  mismatched: float | None = None
  for task, metrics in results_by_task.items():
    key = task.strip().lower().replace("-", "").replace("_", "")
    if key in _MNLI_MATCHED:
      matched = _require(task, metrics, "accuracy")[0]
      if "accuracy_mismatched" in metrics:
        mismatched = float(metrics["accuracy_mismatched"])
    elif key in _MNLI_MISMATCHED:
      mismatched = _require(task, metrics, "accuracy")[0]
    elif tasks_lib.get_task(task).name != "ax":
      scores.append(task_score(task, metrics))
  mnli = [value for value in (matched, mismatched) if value is not None]
  if mnli:
    scores.append(float(np.mean(mnli)))
  if not scores:
    raise ValueError("glue_average needs the results of at least one GLUE task (AX excluded)")
  return float(np.mean(scores))

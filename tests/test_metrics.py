"""GLUE metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pats_jax import metrics
from pats_jax.data import TaskSpec


def test_cola_matthews_by_hand():
  # TP=2, FP=1, TN=2, FN=0: (2*2 - 1*0) / sqrt(3 * 2 * 3 * 2) = 4 / 6.
  result = metrics.glue_metrics("cola", [1, 1, 0, 0, 1], [1, 0, 0, 0, 1])
  assert result == {"matthews_correlation": pytest.approx(4 / 6)}


def test_ax_multiclass_matthews_by_hand():
  preds = np.array([0, 1, 2, 2, 1, 0, 0])
  gold = np.array([0, 1, 2, 1, 1, 2, 0])
  # Gorodkin's R_K: (c*s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2) (s^2 - sum t_k^2)).
  c, s = 5, 7
  p = np.array([3, 2, 2])  # predicted counts per class
  t = np.array([2, 3, 2])  # true counts per class
  expected = (c * s - p @ t) / math.sqrt((s * s - p @ p) * (s * s - t @ t))
  result = metrics.glue_metrics("ax", preds, gold)
  assert result["matthews_correlation"] == pytest.approx(expected)


def test_mrpc_and_qqp_f1_accuracy_by_hand():
  # precision 2/3, recall 1 -> F1 0.8; accuracy 4/5.
  for task in ("mrpc", "qqp"):
    result = metrics.glue_metrics(task, [1, 1, 0, 0, 1], [1, 0, 0, 0, 1])
    assert result["f1"] == pytest.approx(0.8)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["combined_score"] == pytest.approx(0.8)
  result = metrics.glue_metrics("mrpc", [1, 0, 0, 0], [1, 1, 0, 0])
  # precision 1, recall 1/2 -> F1 2/3; accuracy 3/4.
  assert result["f1"] == pytest.approx(2 / 3)
  assert result["combined_score"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_stsb_pearson_spearman_by_hand():
  # Deviations (-1, 0, 1) and (-4/3, -1/3, 5/3): cov 3, var 2 and 42/9.
  result = metrics.glue_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
  pearson = 3 / math.sqrt(2 * 42 / 9)
  assert result["pearson"] == pytest.approx(pearson)
  assert result["spearmanr"] == pytest.approx(1.0)  # Same ranks.
  assert result["combined_score"] == pytest.approx((pearson + 1) / 2)
  # [n, 1] regression outputs are accepted.
  same = metrics.glue_metrics("stsb", np.array([[1.0], [2.0], [3.0]]), [1.0, 2.0, 4.0])
  assert same == result


def test_constant_predictions_give_zero_correlation():
  result = metrics.glue_metrics("stsb", [2.5, 2.5, 2.5], [1.0, 2.0, 4.0])
  assert result == {"pearson": 0.0, "spearmanr": 0.0, "combined_score": 0.0}
  assert metrics.glue_metrics("cola", [1, 1, 1], [1, 0, 1]) == {"matthews_correlation": 0.0}


def test_accuracy_tasks_and_logits():
  for task in ("sst2", "qnli", "rte", "wnli", "mnli"):
    assert metrics.glue_metrics(task, [0, 1, 1], [0, 1, 0]) == {"accuracy": pytest.approx(2 / 3)}
  logits = np.array([[2.0, 1.0, 0.0], [0.0, 0.1, 3.0], [0.0, 5.0, 1.0]])
  assert metrics.glue_metrics("mnli", logits, [0, 2, 0])["accuracy"] == pytest.approx(2 / 3)


def test_best_metric_is_a_key_of_the_result():
  rng = np.random.default_rng(0)
  for name, spec in metrics.tasks_lib.GLUE_TASKS.items():
    if spec.is_regression:
      preds, gold = rng.normal(size=20), rng.normal(size=20)
    else:
      preds, gold = rng.integers(0, spec.num_labels, 20), rng.integers(0, spec.num_labels, 20)
    assert spec.best_metric in metrics.glue_metrics(name, preds, gold), name


def test_metric_names_are_the_keys_of_the_result():
  rng = np.random.default_rng(0)
  custom = [TaskSpec("custom", ("text", None), labels, None, "accuracy") for labels in (1, 2, 3)]
  for spec in [*metrics.tasks_lib.GLUE_TASKS.values(), *custom]:
    if spec.is_regression:
      preds, gold = rng.normal(size=20), rng.normal(size=20)
    else:
      preds, gold = rng.integers(0, spec.num_labels, 20), rng.integers(0, spec.num_labels, 20)
    assert metrics.metric_names(spec) == tuple(metrics.glue_metrics(spec, preds, gold)), spec
  assert metrics.metric_names("mrpc") == ("accuracy", "f1", "combined_score")


def test_custom_tasks():
  binary = TaskSpec("custom", ("text", None), 2, ("no", "yes"), "accuracy")
  result = metrics.glue_metrics(binary, [1, 1, 0, 0, 1], [1, 0, 0, 0, 1])
  assert result == {"accuracy": pytest.approx(0.8), "f1": pytest.approx(0.8)}
  three = TaskSpec("custom", ("text", None), 3, ("a", "b", "c"), "accuracy")
  result = metrics.glue_metrics(three, [0, 1, 1, 2], [0, 1, 2, 2])
  # Per-class F1: a 1, b 2/3 (P 1/2, R 1), c 2/3 (P 1, R 1/2).
  assert result["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
  regression = TaskSpec("score", ("text", None), 1, None, "combined_score")
  assert metrics.glue_metrics(regression, [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])["pearson"] == (
    pytest.approx(1.0)
  )


def test_glue_average_by_hand():
  results = {
    "cola": {"matthews_correlation": 0.5},
    "sst2": {"accuracy": 0.9},
    "mrpc": {"accuracy": 0.8, "f1": 0.9, "combined_score": 0.85},
    "stsb": {"pearson": 0.8, "spearmanr": 0.7, "combined_score": 0.75},
    "mnli": {"accuracy": 0.80},
    "mnli_mismatched": {"accuracy": 0.82},
    "ax": {"matthews_correlation": 0.1},
  }
  # Task scores: 0.5, 0.9, 0.85, 0.75, MNLI 0.81; AX excluded.
  assert metrics.glue_average(results) == pytest.approx((0.5 + 0.9 + 0.85 + 0.75 + 0.81) / 5)
  combined = {"mnli": {"accuracy": 0.80, "accuracy_mismatched": 0.82}, "rte": {"accuracy": 0.6}}
  assert metrics.glue_average(combined) == pytest.approx((0.81 + 0.6) / 2)
  assert metrics.glue_average({"mnli-m": {"accuracy": 0.8}, "MNLI-mm": {"accuracy": 0.7}}) == (
    pytest.approx(0.75)
  )


def test_bad_inputs():
  with pytest.raises(ValueError, match="equal 1-D shapes"):
    metrics.glue_metrics("sst2", [0, 1], [0, 1, 1])
  with pytest.raises(ValueError, match="-1"):
    metrics.glue_metrics("sst2", [0, 1], [-1, -1])
  with pytest.raises(ValueError, match="no examples"):
    metrics.glue_metrics("sst2", [], [])
  with pytest.raises(ValueError, match="class ids"):
    metrics.glue_metrics("sst2", [0.5, 1.0], [0, 1])
  with pytest.raises(ValueError, match="lack"):
    metrics.glue_average({"cola": {"accuracy": 0.5}})
  with pytest.raises(ValueError, match="at least one"):
    metrics.glue_average({"ax": {"matthews_correlation": 0.1}})
  with pytest.raises(ValueError, match="unknown GLUE task"):
    metrics.glue_average({"squad": {"accuracy": 0.5}})

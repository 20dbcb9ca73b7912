"""Sensitivity analysis: concentration, dev sensitivity of a run, and its rank correlation tests."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import REPO_ROOT  # noqa: F401  (puts the repository root on sys.path)

from pats_jax.training import analysis
from scripts.study import stats


def test_concentration_known_values():
  flat = analysis.concentration(np.ones(100))
  assert flat["gini"] == pytest.approx(0.0, abs=1e-12)
  assert flat["top1_share"] == pytest.approx(0.01)
  assert flat["top10_share"] == pytest.approx(0.10)
  spike = analysis.concentration(np.array([0.0, 0.0, 0.0, 4.0]))
  # G = Σ (2i − n − 1) x_(i) / (n Σ x) = (2·4 − 5)·4 / (4·4) = 0.75.
  assert spike["gini"] == pytest.approx(0.75)
  assert spike["top1_share"] == pytest.approx(1.0)
  assert spike["zero_fraction"] == pytest.approx(0.75)


def test_concentration_orders_distributions():
  rng = np.random.default_rng(0)
  narrow = analysis.concentration(rng.uniform(1.0, 2.0, 10_000))
  heavy = analysis.concentration(rng.pareto(1.5, 10_000))
  assert heavy["gini"] > narrow["gini"] + 0.3


@pytest.mark.parametrize(
  "bad", [np.array([]), np.array([1.0, -1.0]), np.zeros(3), np.array([np.nan])]
)
def test_concentration_rejects_bad_input(bad):
  with pytest.raises(ValueError, match="concentration"):
    analysis.concentration(bad)


def test_dev_sensitivity_matches_numpy():
  rng = np.random.default_rng(1)
  params = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.zeros(2, np.float32)}
  batches = [
    {
      "x": rng.normal(size=(4, 3)).astype(np.float32),
      "y": rng.normal(size=(4, 2)).astype(np.float32),
    }
    for _ in range(3)
  ]

  def loss_fn(p, batch):
    return jnp.mean(jnp.square(batch["x"] @ p["w"] + p["b"] - batch["y"]))

  got = analysis.dev_sensitivity(loss_fn, params, batches)
  expected = np.zeros((3, 2))
  for batch in batches:
    residual = batch["x"] @ params["w"] + params["b"] - batch["y"]
    grad_w = 2 * batch["x"].T @ residual / residual.size
    expected += np.abs(params["w"] * grad_w)
  np.testing.assert_allclose(got["w"], expected / len(batches), rtol=1e-5, atol=1e-7)
  assert analysis.select_leaves(got).keys() == {"w"}
  with pytest.raises(ValueError, match="no batches"):
    analysis.dev_sensitivity(loss_fn, params, [])


@pytest.mark.slow
def test_workdir_sensitivity_of_a_tiny_run(tmp_path):
  from _train_helpers import tiny_config

  from pats_jax.training import trainer

  workdir = tmp_path / "run"
  trainer.train_and_evaluate(tiny_config(arg="task=mrpc,method=pats", max_steps=3), workdir)
  report = analysis.workdir_sensitivity(workdir)
  assert report.method == "pats" and report.task == "mrpc"
  assert 0.0 < report.stats["gini"] < 1.0
  assert report.histogram.sum() > 0
  assert str(tmp_path) not in str(report.to_json())
  with pytest.raises(FileNotFoundError, match=r"config\.json"):
    analysis.workdir_sensitivity(tmp_path / "missing")


def test_rank_correlation_statistic_is_spearmans_and_p_a_permutation_p():
  from scipy import stats as scipy_stats

  rng = np.random.default_rng(0)
  x = rng.normal(size=40)
  y = 0.5 * x + rng.normal(size=40)
  rho, p = stats.rank_correlation(x, y, np.zeros(40))
  want = scipy_stats.spearmanr(x, y)
  assert rho == pytest.approx(want.statistic, abs=1e-12)
  assert p == pytest.approx(want.pvalue, abs=0.01)  # permutation vs t approximation
  assert np.isnan(stats.rank_correlation([1.0, 2.0], [1.0, 2.0], [0, 0])[0])
  assert np.isnan(stats.rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [0, 0, 0])[1])


def test_rank_correlation_shuffles_only_within_groups():
  """Five mirror-image pairs in perfect agreement: ρ = 1, but only 2 of the 2^5 within-pair
  shuffles reach |ρ| = 1, so p ≈ 1/16, not the ~0 of ten independent points."""
  d = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
  x = np.concatenate([d, -d])
  groups = np.concatenate([np.arange(5), np.arange(5)])
  rho, p = stats.rank_correlation(x, 2 * x, groups)
  assert rho == pytest.approx(1.0)
  assert p == pytest.approx(2 / 32, abs=0.01)
  assert stats.rank_correlation(x, 2 * x, np.zeros(10))[1] < 0.001


def _record(task, method, seed, gini, score):
  return {
    "task": task,
    "method": method,
    "seed": seed,
    "final_score": score,
    "stats": {"gini": gini},
  }


def test_concentration_vs_score_separates_method_and_seed_effects():
  """More noise lowers both Gini and score (across: ρ > 0), while within each method the
  seeds with higher Gini score lower (seeds: ρ = −1), one point per task and seed."""
  records = []
  for task in ("cola", "mrpc"):
    for level, method in enumerate(("plain", "noisy", "noisier")):
      for seed in range(5):
        gini = 0.7 - 0.05 * level + 0.001 * seed
        score = 0.8 - 0.1 * level - 0.002 * seed
        records.append(_record(task, method, seed, gini, score))
  records.append(_record("rte", "plain", 0, 0.6, 0.5))  # one run: no cell of >= 2 runs
  records += [_record("wnli", "plain", s, g, 0.31) for s, g in enumerate((0.6, 0.7))]
  records += [_record("ax", "plain", s, g, g) for s, g in enumerate((0.6, 0.7, 0.8))]
  rows = {row["task"]: row for row in stats.concentration_vs_score(records)}
  assert list(rows) == ["ax", "cola", "mrpc", "rte", "wnli", "all"]
  assert rows["ax"]["runs"] == 3 and rows["ax"]["rho_across"] == pytest.approx(1.0)
  for task in ("cola", "mrpc", "all"):
    assert rows[task]["rho_across"] > 0.5, rows[task]
    assert rows[task]["rho_seeds"] == pytest.approx(-1.0), rows[task]
  assert rows["cola"]["runs"] == 15 and rows["cola"]["seeds"] == 5
  assert rows["cola"]["p_seeds"] == pytest.approx(1 / 60, abs=0.005)  # 2 of 5! orders
  assert rows["all"]["runs"] == 30 and rows["all"]["seeds"] == 10  # ax not pooled
  assert rows["all"]["p_seeds"] < 0.001
  assert rows["rte"]["seeds"] == 0 and np.isnan(rows["rte"]["rho_seeds"])
  assert rows["wnli"]["runs"] == 0 and np.isnan(rows["wnli"]["rho_across"])

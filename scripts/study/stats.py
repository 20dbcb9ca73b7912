r"""Does a better run have more concentrated sensitivity? Rank correlation with permutation tests.

The PATS paper's second claim is that better fine-tuned models have more concentrated
sensitivity. Over finished runs (each with its Gini coefficient, `pats_jax.training.analysis`,
and its final dev score) this module computes Spearman's rank correlation

  ρ = corr(rank(x), rank(y))

with a two-sided permutation p-value that shuffles the scores only within groups (a task),
so that what a group shares stays out of the null distribution (Good, "Permutation,
Parametric, and Bootstrap Tests of Hypotheses", Springer 2005).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np
from scipy import stats


def rank_correlation(
  x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, permutations: int = 10000, seed: int = 0
) -> tuple[float, float]:
  """Spearman's ρ(x, y) and a permutation p-value that shuffles y within `groups`.

  Two-sided: p = (1 + #{|ρ_perm| >= |ρ|}) / (1 + permutations). Shuffling within groups
  keeps what the groups share (a task, a method) out of the null; with centred values and
  two runs per group, the points of a group are mirror images, so treating them as
  independent (as `scipy.stats.spearmanr`'s p does) would overstate the evidence.
  NaN when x or y is constant or there are fewer than 3 points.
  """
  x, y, groups = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
  if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
    return float("nan"), float("nan")
  rx = stats.rankdata(x)
  ry = stats.rankdata(y)
  rx = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean())
  ry = ry - ry.mean()
  rho = float(rx @ ry / np.linalg.norm(ry))
  rng = np.random.default_rng(seed)
  shuffled = np.tile(ry, (permutations, 1))
  for group in np.unique(groups):
    members = np.flatnonzero(groups == group)
    shuffled[:, members] = rng.permuted(shuffled[:, members], axis=1)
  null = shuffled @ rx / np.linalg.norm(ry)
  p = (1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + permutations)
  return rho, float(p)


def concentration_vs_score(
  records: list[dict], *, not_pooled: Sequence[str] = ("wnli", "ax")
) -> list[dict]:
  """Spearman's ρ(Gini, final score) per task and over all tasks, with permutation p-values.

  `records` are dicts with `task`, `method`, `seed`, `final_score` and `stats["gini"]`
  (`scripts.study.sensitivity`'s per-run records). Per task and over all tasks (`all`), two
  readings, each with a permutation p-value (`rank_correlation`):

  - `across`: every run (all methods and seeds), scores shuffled within the task (over all
    tasks, Gini and score are first centred within their task). Settings that move both
    (e.g. more noise) drive it.
  - `seeds`: is a better seed more concentrated, at equal method? Gini and score are
    centred within each (task, method) cell of >= 2 runs, then averaged per seed over the
    cells: one point per (task, seed), shuffled within the task. The seed is the unit
    because the cells of a task share their seeds (the same data order and head
    initialisation), so a seed's runs under different methods are not independent: with
    two seeds this reading is undefined (two points), with five its smallest p is 1/60.

  A task or cell whose runs all score the same says nothing about the association and is
  left out. The tasks in `not_pooled` get their own rows but stay out of `all` (WNLI and AX,
  which GLUE reports apart, as the tables' average does).

  Returns:
    One dict per task, then `all`: `task`, `runs`, `rho_across`, `p_across`, `seeds`,
    `rho_seeds`, `p_seeds` (NaN where undefined); `runs` and `seeds` count the points used.
  """
  tasks = sorted({record["task"] for record in records})
  pooled: dict[str, list[list]] = {"across": [[], [], []], "seeds": [[], [], []]}

  def centred(group: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    gini = np.array([r["stats"]["gini"] for r in group])
    score = np.array([r["final_score"] for r in group])
    if np.ptp(score) == 0:
      return None
    return gini - gini.mean(), score - score.mean()

  rows = []
  for task in [*tasks, "all"]:
    if task == "all":
      across, seeds = pooled["across"], pooled["seeds"]
    else:
      runs = [r for r in records if r["task"] == task]
      across, seeds = [[], [], []], [[], [], []]
      if (values := centred(runs)) is not None:
        across = [list(values[0]), list(values[1]), [task] * len(runs)]
      by_seed = collections.defaultdict(list)
      for method in sorted({r["method"] for r in runs}):
        cell = [r for r in runs if r["method"] == method]
        if len(cell) >= 2 and (values := centred(cell)) is not None:
          for record, gini, score in zip(cell, *values, strict=True):
            by_seed[record["seed"]].append((gini, score))
      for seed in sorted(by_seed):
        gini, score = np.mean(by_seed[seed], axis=0)
        seeds[0].append(gini)
        seeds[1].append(score)
        seeds[2].append(task)
      for name, part in (("across", across), ("seeds", seeds)):
        for column, values in zip(pooled[name], part, strict=True):
          column.extend(values if task not in not_pooled else [])
    rho_across, p_across = rank_correlation(*across)
    rho_seeds, p_seeds = rank_correlation(*seeds)
    rows.append(
      {
        "task": task,
        "runs": len(across[0]),
        "rho_across": rho_across,
        "p_across": p_across,
        "seeds": len(seeds[0]),
        "rho_seeds": rho_seeds,
        "p_seeds": p_seeds,
      }
    )
  return rows

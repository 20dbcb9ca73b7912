r"""Parameter sensitivity of a fine-tuned model on a dev set, and how concentrated it is.

The sensitivity of a parameter θ_j is the first-order estimate of the loss change if it were
zeroed, the quantity PATS smooths during training (`docs/algorithm.md`, step 1):

  s_j = (1/B) Σ_b |θ_j · g_{b,j}|,   g_b = ∇_θ L(batch b),

averaged over the dev set's batches `b` (padding rows carry no weight in L). The PATS paper
claims that better fine-tuned models have *more concentrated* sensitivity distributions;
concentration over all selected parameters is measured with

- the Gini coefficient `G = Σ_i (2i − n − 1) x_(i) / (n Σ_i x_i)` of the sorted values
  `x_(1) ≤ … ≤ x_(n)` (0: all equal; → 1: all mass on one parameter), and
- the share of the total sensitivity held by the top 1% and top 10% of parameters.

`workdir_sensitivity` measures a finished `train.py` run from its best checkpoint.

References:
  Zhang et al., PATS, EMNLP 2022 (arXiv 2210.12403); Molchanov et al., "Importance estimation
  for neural network pruning", CVPR 2019 (first-order Taylor importance); Zhang et al., PLATON,
  ICML 2022.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

LOG10_BINS = np.linspace(-16.0, 0.0, 129)


def dev_sensitivity(
  loss_fn: Callable[[Any, Mapping[str, jax.Array]], jax.Array],
  params: Any,
  batches: Iterable[Mapping[str, np.ndarray]],
) -> Any:
  """The mean over `batches` of `|θ ⊙ ∇_θ loss_fn(θ, batch)|`, leaf by leaf, in float32.

  Args:
    loss_fn: `(params, batch) -> scalar loss` (jittable).
    params: the parameters θ.
    batches: the dev batches (numpy dicts).

  Returns:
    A pytree like `params` of float32 arrays.

  Raises:
    ValueError: `batches` is empty.
  """

  # θ is an argument, not a closure: a closed-over array would be compiled in as a constant,
  # so the compiled step (and its persistent-cache entry) would hold one run's weights.
  @jax.jit
  def accumulate(total: Any, theta: Any, batch: Mapping[str, jax.Array]) -> Any:
    grads = jax.grad(loss_fn)(theta, batch)
    return jax.tree.map(
      lambda acc, t, g: acc + jnp.abs(t.astype(jnp.float32) * g.astype(jnp.float32)),
      total,
      theta,
      grads,
    )

  total = optax.tree.zeros_like(params, dtype=jnp.float32)
  count = 0
  for batch in batches:
    total = accumulate(total, params, batch)
    count += 1
  if count == 0:
    raise ValueError("dev_sensitivity got no batches: the dev split is empty")
  return jax.tree.map(lambda acc: np.asarray(acc) / count, total)


def concentration(values: np.ndarray) -> dict[str, float]:
  """Gini coefficient and top-1%/top-10% shares of a non-negative vector (see module doc).

  Args:
    values: non-negative sensitivities, any shape (flattened).

  Returns:
    `{"gini", "top1_share", "top10_share", "zero_fraction", "count"}`.

  Raises:
    ValueError: `values` is empty, has negative or non-finite entries, or sums to 0.
  """
  x = np.sort(np.asarray(values, dtype=np.float64).ravel())
  if x.size == 0:
    raise ValueError("concentration needs at least one value")
  if not np.all(np.isfinite(x)) or x[0] < 0:
    raise ValueError("concentration needs finite non-negative values")
  total = x.sum()
  if total <= 0:
    raise ValueError("concentration is undefined when every value is 0")
  n = x.size
  ranks = np.arange(1, n + 1, dtype=np.float64)
  gini = float(np.sum((2 * ranks - n - 1) * x) / (n * total))

  def top_share(fraction: float) -> float:
    k = max(1, round(fraction * n))
    return float(x[-k:].sum() / total)

  return {
    "gini": gini,
    "top1_share": top_share(0.01),
    "top10_share": top_share(0.10),
    "zero_fraction": float(np.mean(x == 0)),
    "count": n,
  }


def select_leaves(tree: Any, *, include_embeddings: bool = False) -> dict[str, np.ndarray]:
  """The weight matrices (`ndim >= 2`, PATS's default noise mask) of `tree`, by path.

  Word, position and token-type embeddings are left out unless `include_embeddings`: their
  gradients are sparse (most rows get none on a dev set), so they would swamp the
  distribution with zeros.
  """
  leaves = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = "/".join(str(getattr(entry, "key", getattr(entry, "idx", entry))) for entry in path)
    if np.ndim(leaf) < 2:
      continue
    if not include_embeddings and "embeddings" in name.lower():
      continue
    leaves[name] = np.asarray(leaf)
  return leaves


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
  """What `workdir_sensitivity` measured for one run.

  Attributes:
    task: its task name.
    method: its method (`config.method`).
    seed: its seed.
    stats: `concentration` of all selected parameters' sensitivities.
    histogram: counts of `log10(s)` in `LOG10_BINS` (zeros and values below the first edge
      left out; see `stats["zero_fraction"]`).
  """

  task: str
  method: str
  seed: int
  stats: dict[str, float]
  histogram: np.ndarray

  def to_json(self) -> dict[str, Any]:
    """A JSON-ready dict."""
    return {
      "task": self.task,
      "method": self.method,
      "seed": self.seed,
      "stats": self.stats,
      "histogram": self.histogram.tolist(),
      "log10_bins": LOG10_BINS.tolist(),
    }


def workdir_sensitivity(
  workdir: str | pathlib.Path,
  *,
  include_embeddings: bool = False,
  batch_size: int | None = None,
) -> SensitivityReport:
  """Sensitivity on the dev set of a finished `train.py` run.

  Rebuilds the model and data from the run's `config.json`, restores the parameters of the
  best checkpoint (`workdir/best`, the model the run reports), and computes
  `dev_sensitivity` over the first dev split with the run's loss.

  Args:
    workdir: a folder written by `train.py`.
    include_embeddings: see `select_leaves`.
    batch_size: dev batch size; default the run's `eval_batch_size`.

  Returns:
    A `SensitivityReport`.

  Raises:
    FileNotFoundError: the folder has no `config.json` or no best checkpoint.
  """
  # Imported here: the trainer pulls in orbax and the data stack.
  from pats_jax import data as data_lib
  from pats_jax.training import checkpointing, steps, trainer, writers

  workdir = pathlib.Path(workdir)
  config = writers.read_config(workdir)
  task, pretrained = trainer.load_sources(config, workdir)
  task = trainer.tokenize_task(task, pretrained.tokenizer, config)
  folder = workdir / "best"
  if not folder.is_dir():
    raise FileNotFoundError(f"{folder} does not exist: is {workdir} a finished train.py run?")
  abstract = {"params": jax.eval_shape(lambda: pretrained.params)}
  checkpointer = checkpointing.Checkpointer(folder, max_to_keep=1)
  restored = checkpointer.restore_latest(abstract)
  checkpointer.close()
  if restored is None:
    raise FileNotFoundError(f"no checkpoint in {folder}")
  params = restored[0]["params"]
  regression = task.spec.num_labels == 1

  def loss_fn(p: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
    logits = pretrained.module.apply(
      {"params": p},
      batch["input_ids"],
      batch["attention_mask"],
      batch["token_type_ids"],
      deterministic=True,
    )
    return steps.task_loss(logits, batch["labels"], regression=regression, weights=batch["weights"])

  dev_split = next(iter(task.dev.values()))
  batches = (
    {key: value for key, value in batch.items() if key != "idx"}
    for batch in data_lib.eval_batches(
      dev_split,
      batch_size=batch_size or config.eval_batch_size,
      max_length=config.data.max_length,
      bucket_multiple=config.data.bucket_multiple,
    )
  )
  sensitivity = select_leaves(
    dev_sensitivity(loss_fn, params, batches), include_embeddings=include_embeddings
  )
  values = np.concatenate([leaf.ravel() for leaf in sensitivity.values()])
  positive = values[values > 0]
  histogram, _ = np.histogram(np.log10(positive), bins=LOG10_BINS)
  return SensitivityReport(
    task=task.spec.name,
    method=str(config.method),
    seed=int(config.seed),
    stats=concentration(values),
    histogram=histogram,
  )

"""The jitted train and eval steps, and the statistics logged per step.

Loss: softmax cross-entropy for classification, mean squared error for regression
(`num_labels == 1`), averaged over the batch. Dropout draws its key from
`fold_in(key(seed), step)` (a key of `config.dropout_key_impl`), so a resumed run draws the
same masks as an uninterrupted one.

Non-finite steps. A micro-step is finite when its loss and every element of its gradients are
finite. This one test decides everything: the step is counted (`nonfinite_steps`,
`consecutive_nonfinite`, which stop the run in the trainer), and with `skip_nonfinite`
(`config.apply_if_finite`) it is skipped: the parameters and the whole optimizer state stay as
they were (PATS EMAs and key, Adam's moments, the schedules' count and, with accumulation,
`optax.MultiSteps`' accumulated gradient and micro-step count), so the next finite micro-batch
takes the skipped one's place in the update. Without `skip_nonfinite` the update is applied
and the trainer stops the run at the step.

What is logged is what was applied. `learning_rate` and `noise_scale` are the schedules at the
optimizer's own count of applied updates (`optimizers.applied_updates`) before the step: the
values of the update this micro-step's gradients go into (the count moves once per applied
update, not per micro-step, and not on a skipped step). A skipped step logs `skipped` = 1, an
`update_norm` of 0, and the values of the next update, which it does not go into.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding

import pats_jax
from pats_jax import models
from pats_jax.training import optimizers, reductions, sharding


class TrainState(NamedTuple):
  """Everything a checkpoint must hold to continue a run exactly.

  Attributes:
    step: micro-steps done (int32 scalar); the data position and dropout key derive from it.
    params: the model parameters.
    opt_state: the whole optimizer state (PATS EMAs and key included).
    nonfinite_steps: micro-steps whose loss or gradients were not finite (int32 scalar).
    consecutive_nonfinite: non-finite micro-steps since the last finite one (int32 scalar).
  """

  step: jax.Array
  params: Any
  opt_state: Any
  nonfinite_steps: jax.Array
  consecutive_nonfinite: jax.Array


def init_state(params: Any, tx: optax.GradientTransformation) -> TrainState:
  """The state before step 0."""
  zero = jnp.zeros((), jnp.int32)
  return TrainState(zero, params, tx.init(params), zero, zero)


def task_loss(
  logits: jax.Array, labels: jax.Array, *, regression: bool, weights: jax.Array | None = None
) -> jax.Array:
  """Cross-entropy over classes, or squared error of `logits[:, 0]` for regression.

  The mean over the batch, or with `weights` (0 on padding rows) the weighted mean
  `Σ_i w_i l_i / Σ_i w_i`.
  """
  logits = logits.astype(jnp.float32)
  if regression:
    losses = jnp.square(logits[:, 0] - labels)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weights is None:
    return jnp.mean(losses)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _apply(module: Any, params: Any, batch: dict[str, jax.Array], *, dropout_key: jax.Array | None):
  return module.apply(
    {"params": params},
    batch["input_ids"],
    batch["attention_mask"],
    batch["token_type_ids"],
    deterministic=dropout_key is None,
    rngs={"dropout": dropout_key} if dropout_key is not None else None,
  )


def make_train_step(
  module: Any,
  optimizer: optimizers.Optimizer,
  *,
  seed: int,
  regression: bool,
  skip_nonfinite: bool = False,
  dropout_key_impl: str = "threefry2x32",
  norms_after_update: bool = False,
  grouped_reductions: bool = False,
) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns `train_step(state, batch) -> (state, metrics)` (not jitted).

  Args:
    module: the Flax model.
    optimizer: the run's optimizer (`optimizers.make_optimizer`).
    seed: the run's seed (dropout keys).
    regression: a one-output regression head (squared error) instead of classes.
    skip_nonfinite: leave the parameters and the optimizer state unchanged on a micro-step
      whose loss or gradients are not finite (the module docstring).
    dropout_key_impl: the `jax.random` implementation of the dropout keys
      (`optimizers.KEY_IMPLS`): "threefry2x32" draws the same masks on any mesh; "rbg" and
      "unsafe_rbg" take the bits from the backend's generator (the TPU's hardware one), far
      cheaper there, with masks that may depend on the sharding and the XLA version.
    norms_after_update: compute the logged parameter and update norms from the new state and
      the updates once they are written, not in the update's kernels (an optimization
      barrier: the values are the same). For XLA:GPU: there, a norm fused into the update
      reads the old parameters after the update has overwritten them in the donated buffers,
      so XLA copies them first: a copy kernel per leaf (about 450 of a BERT-base step's
      2,160 kernels with the parameter norm fused, 11 more with the update norm fused). The
      updates then take a buffer of the parameters' size. On TPU the fused norms are cheaper,
      so they stay fused.
    grouped_reductions: the non-finite test and the logged norms (`grad_norm`, `param_norm`,
      `update_norm`) as one reduction each over the joined leaves (`reductions`), not one or
      two kernels per leaf: for XLA:GPU, on replicated parameters (a sharded leaf would be
      gathered). The test is the same; the norms differ only by the order of their float32
      sums. The optimizer's gradient clipping is chosen with it (`build_run_steps`).

  Metrics: `loss`, `learning_rate` and `noise_scale` (of the update this micro-step goes into,
  at the optimizer's own count), `grad_norm`, `param_norm`, `update_norm` (global L2 norms),
  `skipped` (1 on a skipped micro-step), `nonfinite_steps` and `consecutive_nonfinite`.
  """

  def train_step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict]:
    dropout_key = jax.random.fold_in(jax.random.key(seed, impl=dropout_key_impl), state.step)

    def loss_fn(params: Any) -> jax.Array:
      logits = _apply(module, params, batch, dropout_key=dropout_key)
      return task_loss(logits, batch["labels"], regression=regression)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    finite = jnp.isfinite(loss) & reductions.all_finite(grads, grouped=grouped_reductions)
    norm = functools.partial(reductions.global_norm, grouped=grouped_reductions)
    count = optimizers.applied_updates(state.opt_state)  # Updates applied before this step.

    def update(_: Any) -> tuple[Any, Any]:
      return optimizer.tx.update(grads, state.opt_state, state.params)

    def keep(_: Any) -> tuple[Any, Any]:
      shapes = jax.eval_shape(update, None)[0]
      return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.opt_state

    if skip_nonfinite:
      updates, opt_state = jax.lax.cond(finite, update, keep, None)
      skipped = ~finite
    else:
      updates, opt_state = update(None)
      skipped = jnp.zeros((), bool)
    params = optax.apply_updates(state.params, updates)
    if norms_after_update:
      params, opt_state, updates = jax.lax.optimization_barrier((params, opt_state, updates))
    nonfinite = state.nonfinite_steps + (~finite).astype(jnp.int32)
    consecutive = jnp.where(finite, 0, state.consecutive_nonfinite + 1)
    metrics = {
      "loss": loss,
      "learning_rate": optimizer.learning_rate(count),
      "grad_norm": norm(grads),
      "param_norm": norm(params),
      "update_norm": norm(updates),
      "skipped": skipped.astype(jnp.int32),
      "nonfinite_steps": nonfinite,
      "consecutive_nonfinite": consecutive,
    }
    if optimizer.noise_scale is not None:
      metrics["noise_scale"] = optimizer.noise_scale(count)
    return TrainState(state.step + 1, params, opt_state, nonfinite, consecutive), metrics

  return train_step


def make_pats_stats(optimizer: optimizers.Optimizer) -> Callable | None:
  """Returns `pats_stats(state) -> dict` of `pats_jax.pats_statistics`, or None without PATS.

  `noise_scale` is the schedule at PATS's own count minus one: that of the last update applied
  (the value `train_step` logged for it), however many micro-steps or skipped steps there were.
  With stacked layers (`optimizer.layer_axis`) the statistics are those of the same layers held
  as separate leaves: the names and meanings do not depend on the layout.
  """
  if optimizer.noise_scale is None:
    return None

  def pats_stats(state: TrainState) -> dict[str, jax.Array]:
    pats_state = pats_jax.find_pats_state(state.opt_state)
    if pats_state is None:
      return {}
    stats = pats_jax.pats_statistics(
      state.params,
      pats_state,
      noise_scale=optimizer.noise_scale,
      layer_axis=optimizer.layer_axis,
      **optimizer.pats_options,
    )
    return {f"pats/{name}": value for name, value in stats.items()}

  return pats_stats


def make_eval_step(module: Any, *, regression: bool) -> Callable[[Any, dict], dict]:
  """Returns `eval_step(params, batch) -> dict` of predictions and the batch's labels, weights, idx.

  Predictions are class ids, or the regression output.
  """

  def eval_step(params: Any, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    logits = _apply(module, params, batch, dropout_key=None).astype(jnp.float32)
    predictions = logits[:, 0] if regression else jnp.argmax(logits, axis=-1)
    return {
      "predictions": predictions,
      "labels": batch["labels"],
      "weights": batch["weights"],
      "idx": batch["idx"],
    }

  return eval_step


def traced_with_joined_projections(step: Callable, joined: bool) -> Callable:
  """`step`, traced with the attention's query, key and value projections joined into one
  matmul or not (`models.joined_projections`): joined for XLA:GPU, where each matmul of the
  step is a kernel; separate for the TPU compiler, which estimates them faster."""

  @functools.wraps(step)
  def traced(*args: Any) -> Any:
    with models.joined_projections(joined):
      return step(*args)

  return traced


def traced_with_activation_sharding(step: Callable, mesh: Mesh, *, fsdp: bool) -> Callable:
  """`step`, traced with the model's activations pinned to the mesh's rules
  (`models.activation_sharding`): rows split over ("data", "fsdp"), never the model dimension."""

  @functools.wraps(step)
  def traced(*args: Any) -> Any:
    with models.activation_sharding(mesh, models.axis_rules(fsdp=fsdp)):
      return step(*args)

  return traced


def jit_steps(
  train_step: Callable,
  eval_step: Callable,
  pats_stats: Callable | None,
  *,
  state_shardings: Any,
  batch_sharding: Any,
  replicated: Any,
):
  """Jits the steps with explicit shardings; `train_step` donates its state."""
  jit_train = jax.jit(
    train_step,
    in_shardings=(state_shardings, batch_sharding),
    out_shardings=(state_shardings, replicated),
    donate_argnums=(0,),
  )
  jit_eval = jax.jit(
    eval_step, in_shardings=(state_shardings.params, batch_sharding), out_shardings=batch_sharding
  )
  jit_stats = None
  if pats_stats is not None:
    jit_stats = jax.jit(pats_stats, in_shardings=(state_shardings,), out_shardings=replicated)
  return jit_train, jit_eval, jit_stats


@dataclasses.dataclass(frozen=True)
class RunSteps:
  """A run's optimizer, jitted steps and the shardings they were built for.

  Attributes:
    optimizer: the config's optimizer (`optimizers.make_optimizer`).
    abstract_state: the `TrainState` as `jax.ShapeDtypeStruct`s (no memory).
    state_shardings: the `NamedSharding` of every state leaf.
    batch_sharding: the sharding of every batch array (rows over all mesh axes).
    train_step: `jit_steps`' train step; `eval_step` and `pats_stats` likewise (None without
      PATS).
  """

  optimizer: optimizers.Optimizer
  abstract_state: TrainState
  state_shardings: TrainState
  batch_sharding: NamedSharding
  train_step: Callable
  eval_step: Callable
  pats_stats: Callable | None


def build_run_steps(
  config: ml_collections.ConfigDict,
  pretrained: models.Pretrained,
  mesh: Mesh,
  *,
  num_updates: int,
  regression: bool,
  gpu_program: bool | None = None,
) -> RunSteps:
  """The optimizer, shardings and jitted steps of a run of `config` on `mesh`.

  The trainer and the dry run (`train.py --compile_for`) build their steps here, so that what
  a dry run compiles is what the run executes.

  Args:
    config: the run's config (`configs/glue.py` fields).
    pretrained: the model; its `params` may be arrays or `jax.ShapeDtypeStruct`s.
    mesh: the device mesh (`sharding.make_mesh`).
    num_updates: optimizer updates of the whole run (the schedules' length).
    regression: one output trained with squared error, else classes with cross-entropy.
    gpu_program: shape the steps for XLA:GPU (the models' joined projections,
      `make_train_step`'s `norms_after_update`, and, without FSDP, `grouped_reductions` and the
      optimizer's `grouped_clipping`); by default when the mesh's devices are GPUs.
  """
  on_gpu = mesh.devices.flat[0].platform == "gpu" if gpu_program is None else gpu_program
  grouped = on_gpu and config.mesh.fsdp == 1
  optimizer = optimizers.make_optimizer(config, num_updates, grouped_clipping=grouped)
  param_shardings = sharding.param_shardings(
    pretrained.params, models.logical_axes(pretrained), mesh, fsdp=config.mesh.fsdp > 1
  )
  abstract = jax.eval_shape(lambda p: init_state(p, optimizer.tx), pretrained.params)
  state_shardings = sharding.state_shardings(abstract, pretrained.params, param_shardings, mesh)
  state_shardings = state_shardings._replace(params=param_shardings)
  batch_sharding = sharding.batch_sharding(mesh)

  def pinned(step: Callable) -> Callable:
    step = traced_with_joined_projections(step, on_gpu)
    return traced_with_activation_sharding(step, mesh, fsdp=config.mesh.fsdp > 1)

  train_step, eval_step, pats_stats = jit_steps(
    pinned(
      make_train_step(
        pretrained.module,
        optimizer,
        seed=config.seed,
        regression=regression,
        skip_nonfinite=config.apply_if_finite,
        dropout_key_impl=config.dropout_key_impl,
        norms_after_update=on_gpu,
        grouped_reductions=grouped,
      )
    ),
    pinned(make_eval_step(pretrained.module, regression=regression)),
    make_pats_stats(optimizer),
    state_shardings=state_shardings,
    batch_sharding=batch_sharding,
    replicated=sharding.replicated(mesh),
  )
  return RunSteps(
    optimizer, abstract, state_shardings, batch_sharding, train_step, eval_step, pats_stats
  )

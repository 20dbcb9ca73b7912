"""The optax optimizer of a config: PATS or a baseline, with schedules, clipping and accumulation.

Every method shares AdamW with the usual decay mask (`pats_jax.decay_mask`: weight matrices
only) and the learning-rate schedule

  lr(t) = lr_peak * t / T_w                      for t < T_w   (linear warm-up)
  lr(t) = lr_peak * (T - t) / (T - T_w)          for t >= T_w  (linear decay to 0)

over T optimizer updates, T_w = round(warmup_ratio * T). The methods (`config.method`):

- `plain`: AdamW (`pats_jax.adamw`).
- `pats`: `pats_jax.pats_adamw` (`docs/algorithm.md`, "One step"); `uniform` is PATS with
  `normalize="none"` (sensitivity-blind noise) and `inverse` PATS with `direction="inverse"`.
- `noisytune`: plain AdamW after a one-off perturbation of the parameters (`perturb_params`).
- `sage`: `pats_jax.sage_adamw`: SAGE scales the Adam step of the leaves `sage.scaled_leaves`
  names, and the weight decay too with `sage.scale_weight_decay=True`.
- `add_noise`: Gaussian gradient noise (`optax.add_noise`, Neelakantan et al. 2015) before AdamW.

The PATS noise scale lambda_t is `noise_scale * lr(t) / lr_peak` (`noise_schedule="lr_shape"`,
the default) or constant. Gradients are clipped to `grad_clip_norm` first (by their global
norm; a GPU program without FSDP takes that norm as one reduction over the joined leaves,
`reductions.clip_by_global_norm`); `grad_accum_steps > 1` wraps all in `optax.MultiSteps`.
Both schedules are evaluated at the optimizer's own count of applied updates
(`applied_updates`), which is also what the trainer logs.

`config.apply_if_finite` is not an optax wrapper here: the train step skips a micro-step whose
loss or gradients are not finite (`steps.make_train_step`), by the same test with which it
counts such steps. `optax.apply_if_finite` would test the updates alone, so a finite loss with
infinite gradients would be skipped without being counted, and under `optax.MultiSteps` it sees
the accumulated mean, into which a NaN micro-batch has already entered for good (MultiSteps
clears its accumulator by multiplying it by 0, and 0 * NaN = NaN), so every later update would
be skipped.

Models loaded with `model_config.scan_layers=True` hold each kind of layer weight of all L layers
in one leaf `[L, ...]`. PATS and NoisyTune take their per-matrix numbers (`std(θ_W)`, the
min-max or rank normalisation of the sensitivity) per layer there (`layer_axis`), so a run
computes the same amplitudes in either layout; embeddings and the head stay one matrix each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

import pats_jax
from pats_jax import models
from pats_jax.training import reductions

PATS_VARIANTS = {
  "pats": {},
  "uniform": {"normalize": "none"},
  "inverse": {"direction": "inverse"},
}
# Every method `make_optimizer` builds, and the shapes of the PATS noise scale over steps.
METHODS = ("plain", *PATS_VARIANTS, "noisytune", "sage", "add_noise")
NOISE_SCHEDULES = ("lr_shape", "constant")
# `jax.random` key implementations for the PATS noise (`config.pats.key_impl`) and dropout
# (`config.dropout_key_impl`): threefry2x32 (the default) draws the same bits on any device
# count; rbg and unsafe_rbg use the accelerator's bit generator (docs/algorithm.md, "Random
# numbers").
KEY_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
# `config.sage.scaled_leaves`: the leaves whose Adam step SAGE scales.
SAGE_SCALED_LEAVES = {
  "encoder_linear": pats_jax.encoder_linear_mask,  # The encoder layers' linear layers.
  "all": pats_jax.all_leaves_mask,
}


def method_label(method: str, config: Mapping[str, Any]) -> str:
  """`method`, `method@<noise scale>` for the methods with PATS noise, then `+<config.tag>`.

  E.g. `plain`, `pats@0.02`, `pats@0.02+noemb`. `config` is a run's config (a ConfigDict or
  its `config.json` as a dict); tables and plots of sweeps use this label so that each noise
  scale and each named variant (a sweep's `variants`) gets its own row.
  """
  label = method
  if method in PATS_VARIANTS and "pats" in config:
    label = f"{method}@{config['pats']['noise_scale']:g}"
  tag = config.get("tag") or ""
  return f"{label}+{tag}" if tag else label


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """An optimizer built from a config.

  Attributes:
    tx: the gradient transformation; `tx.update` needs `params`.
    learning_rate: the schedule of optimizer updates (not micro-steps).
    noise_scale: the PATS noise-scale schedule, or None for methods without PATS noise.
    pats_options: the `normalize` and `direction` of PATS (for `pats_jax.pats_statistics`).
    num_updates: T, the number of optimizer updates of the whole run.
    layer_axis: the `layer_axis` PATS was given (`layer_axis(config)`), for its statistics.
  """

  tx: optax.GradientTransformation
  learning_rate: optax.Schedule
  noise_scale: optax.Schedule | None
  pats_options: dict[str, str]
  num_updates: int
  layer_axis: Callable[[Any], Any] | None = None


def layer_axis(config: ml_collections.ConfigDict) -> Callable[[Any], Any] | None:
  """Which axis of each parameter stacks layers, as `pats_jax.pats(layer_axis=...)` takes it.

  `pats_jax.models.layer_axes` (0 on the stacked `encoder/layers` leaves, None elsewhere) when
  `config.model_config.scan_layers`; None (every leaf one matrix) otherwise.
  """
  return models.layer_axes if config.model_config.scan_layers else None


def learning_rate_schedule(config: ml_collections.ConfigDict, num_updates: int) -> optax.Schedule:
  """Linear warm-up over `warmup_ratio * num_updates` updates, then linear decay to 0."""
  if not 0.0 <= config.warmup_ratio < 1.0:
    raise ValueError(f"config.warmup_ratio={config.warmup_ratio} must be in [0, 1)")
  warmup = round(config.warmup_ratio * num_updates)
  return optax.join_schedules(
    [
      optax.linear_schedule(0.0, config.learning_rate, max(warmup, 1)),
      optax.linear_schedule(config.learning_rate, 0.0, max(num_updates - warmup, 1)),
    ],
    [warmup],
  )


def noise_scale_schedule(
  config: ml_collections.ConfigDict, learning_rate: optax.Schedule
) -> optax.Schedule:
  """lambda_t: `noise_scale * lr(t) / lr_peak` ("lr_shape") or `noise_scale` ("constant")."""
  peak, shape = config.pats.noise_scale, config.pats.noise_schedule
  if shape == "constant":
    return optax.constant_schedule(peak)
  if shape == "lr_shape":
    if config.learning_rate <= 0:
      raise ValueError("pats.noise_schedule='lr_shape' needs config.learning_rate > 0")
    return lambda count: peak * learning_rate(count) / config.learning_rate
  raise ValueError(f"config.pats.noise_schedule={shape!r}; expected 'lr_shape' or 'constant'")


def noise_mask(config: ml_collections.ConfigDict) -> Callable[[Any], Any] | None:
  """The leaves that get PATS noise: the default (weight matrices, `pats_jax.weight_matrix_mask`)
  or the weight matrices outside the embeddings."""
  if config.pats.noise_on_embeddings:
    return None

  def mask(params: Any) -> Any:
    def selected(path: tuple[Any, ...], matrix: bool) -> bool:
      names = [str(getattr(entry, "key", entry)) for entry in path]
      return matrix and not any("embedding" in name for name in names)

    # Not `ndim >= 2` alone: stacked layers (`scan_layers`) make biases and norms 2-D.
    return jax.tree_util.tree_map_with_path(selected, pats_jax.weight_matrix_mask(params))

  return mask


def _adamw(config: ml_collections.ConfigDict, learning_rate: optax.Schedule):
  return pats_jax.adamw(
    learning_rate,
    weight_decay=config.weight_decay,
    b1=config.adam_b1,
    b2=config.adam_b2,
    eps=config.adam_eps,
  )


def make_optimizer(
  config: ml_collections.ConfigDict, num_updates: int, *, grouped_clipping: bool = False
) -> Optimizer:
  """Builds the optimizer of `config` for a run of `num_updates` optimizer updates.

  Args:
    config: the run's config (`configs/glue.py` fields).
    num_updates: T, the number of optimizer updates (micro-steps / `grad_accum_steps`).
    grouped_clipping: clip by a global norm taken as one reduction over the joined leaves
      (`reductions.clip_by_global_norm`), for XLA:GPU on replicated parameters: the same rule,
      a norm that differs by the order of its float32 sums, a few kernels instead of one or
      two per leaf.

  Returns:
    An `Optimizer`.

  Raises:
    ValueError: an unknown method or option.
  """
  if num_updates < 1:
    raise ValueError(
      f"the run has {num_updates} optimizer updates; it needs at least 1 (more "
      "data, more epochs, or a smaller batch_size)"
    )
  learning_rate = learning_rate_schedule(config, num_updates)
  noise_scale, pats_options, axis = None, {}, None
  method = config.method
  if method in PATS_VARIANTS:
    noise_scale = noise_scale_schedule(config, learning_rate)
    pats_options = {
      "normalize": config.pats.normalize,
      "direction": config.pats.direction,
      **PATS_VARIANTS[method],
    }
    axis = layer_axis(config)
    tx = pats_jax.pats_adamw(
      learning_rate,
      weight_decay=config.weight_decay,
      noise_scale=noise_scale,
      key=jax.random.key(config.seed + 1, impl=config.pats.key_impl),
      b1=config.adam_b1,
      b2=config.adam_b2,
      eps=config.adam_eps,
      beta1=config.pats.beta1,
      beta2=config.pats.beta2,
      sensitivity=config.pats.sensitivity,
      distribution=config.pats.distribution,
      mask=noise_mask(config),
      layer_axis=axis,
      ema_dtype=jnp.dtype(config.pats.ema_dtype) if config.pats.ema_dtype else None,
      statistics=config.pats.statistics,
      **pats_options,
    )
  elif method in ("plain", "noisytune"):
    tx = _adamw(config, learning_rate)
  elif method == "sage":
    tx = pats_jax.sage_adamw(
      learning_rate,
      weight_decay=config.weight_decay,
      b1=config.adam_b1,
      b2=config.adam_b2,
      eps=config.adam_eps,
      beta3=config.sage.beta3,
      mask=SAGE_SCALED_LEAVES[config.sage.scaled_leaves],
      scale_weight_decay=config.sage.scale_weight_decay,
    )
  elif method == "add_noise":
    tx = optax.chain(
      optax.add_noise(config.add_noise.eta, config.add_noise.gamma, key=config.seed + 2),
      _adamw(config, learning_rate),
    )
  else:
    raise ValueError(f"unknown config.method={method!r}")

  if config.grad_clip_norm > 0:
    clip = reductions.clip_by_global_norm(config.grad_clip_norm, grouped=grouped_clipping)
    tx = optax.chain(clip, tx)
  if config.grad_accum_steps > 1:
    tx = optax.MultiSteps(tx, every_k_schedule=config.grad_accum_steps).gradient_transformation()
  return Optimizer(
    tx=tx,
    learning_rate=learning_rate,
    noise_scale=noise_scale,
    pats_options=pats_options,
    num_updates=num_updates,
    layer_axis=axis,
  )


def applied_updates(opt_state: Any) -> jax.Array:
  """How many updates the optimizer has applied: the count its learning-rate schedule is at.

  Every optimizer `make_optimizer` builds scales by its schedule through one optax
  `ScaleByScheduleState`; its count moves once per applied update (once per `grad_accum_steps`
  micro-steps under `optax.MultiSteps`, and not on a step the trainer skips). The next update
  uses `learning_rate(count)` and, with PATS, `noise_scale(count)` (PATS's own count is the
  same).

  Args:
    opt_state: the optimizer state (`Optimizer.tx.init` or a later one).

  Returns:
    The count, an int32 scalar.

  Raises:
    ValueError: `opt_state` holds no such count, or more than one.
  """

  def is_schedule(node: Any) -> bool:
    return isinstance(node, optax.ScaleByScheduleState)

  found = [node for node in jax.tree.leaves(opt_state, is_leaf=is_schedule) if is_schedule(node)]
  if len(found) != 1:
    raise ValueError(
      f"the optimizer state holds {len(found)} learning-rate schedule counts; expected one"
    )
  return found[0].count


def perturb_params(config: ml_collections.ConfigDict, params: Any) -> Any:
  """The one-off NoisyTune perturbation of `noisytune` runs; other methods return `params`.

  `std(W)` is that of each layer's matrix, also for stacked layers (`scan_layers`).
  """
  if config.method != "noisytune":
    return params
  return pats_jax.noisytune(
    params,
    jax.random.key(config.seed + 3),
    scale=config.noisytune.scale,
    layer_axis=models.layer_axes if models.is_stacked(params) else None,
  )

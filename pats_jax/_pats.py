"""PATS (Perturbation According To Sensitivity) as an optax transformation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pats_jax import _checks, _masks, _steps


class MatrixStatistics(NamedTuple):
  """The per-matrix statistics of one `pats` update's inputs, kept for the next update
  (`statistics="previous"`). Each field has the structure of params: a float32 array per
  selected leaf, one value per matrix (per layer of a stacked leaf, kept as broadcastable
  axes), and `optax.MaskedNode()` elsewhere.

  Attributes:
    importance_min: `min I` of the importance the update read from the state (the one the
      update before it wrote; `normalize="minmax"`, None otherwise).
    importance_max: `max I`, likewise.
    theta_std: `std(θ_W)` of the parameters the update was given.
  """

  importance_min: optax.Params | None
  importance_max: optax.Params | None
  theta_std: optax.Params


class PatsState(NamedTuple):
  """State of `pats`.

  Attributes:
    count: int32 scalar, the number of steps taken.
    key: the PRNG key; split every step, one half drawing this step's noise.
    sensitivity: the sensitivity EMA `ŝ`, a pytree with the structure of params: an
      array (in `ema_dtype`) for each selected leaf, `optax.MaskedNode()` elsewhere.
    uncertainty: the uncertainty EMA `û`, laid out like `sensitivity`; None when
      `beta2` is None.
    inner_state: the state of the wrapped optimizer.
    statistics: with `statistics="previous"`, the `MatrixStatistics` of the last update's
      inputs (before the first: `min I = max I = 0` and the `std(θ_W)` of the params given
      to `init`); None with `statistics="current"`.
  """

  count: jax.Array
  key: jax.Array
  sensitivity: optax.Params
  uncertainty: optax.Params | None
  inner_state: optax.OptState
  statistics: MatrixStatistics | None = None


def pats(
  inner: optax.GradientTransformation,
  *,
  noise_scale: optax.ScalarOrSchedule,
  key: jax.Array | int,
  beta1: float = 0.85,
  beta2: float | None = None,
  sensitivity: str = "taylor",
  normalize: str = "minmax",
  direction: str = "normal",
  distribution: str = "uniform",
  mask: _masks.MaskOrFn = None,
  layer_axis: _masks.LayerAxis = None,
  ema_dtype: Any = None,
  statistics: str = "current",
) -> optax.GradientTransformationExtraArgs:
  r"""PATS: adds noise to `inner`'s updates, less to parameters the task is sensitive to.

  Each step t, for each selected leaf W (a weight matrix by default), with θ the
  parameters before the step and g the raw gradient given to `update` (before `inner`
  sees it), all from this step's θ and g:

  1. Sensitivity, a first-order estimate of the loss change if the parameter were
     zeroed: `s = |θ ⊙ g|` (`sensitivity="taylor"`), or `s = |g|` (`"gradient"`).
  2. Smoothing: `ŝ ← β1·ŝ + (1−β1)·s`, with `ŝ = 0` before step 1.
  3. Importance: `I = ŝ`; with `beta2`, also the uncertainty
     `û ← β2·û + (1−β2)·|s − ŝ|` (with the new ŝ) and `I = ŝ ⊙ û`.
  4. Normalisation within the matrix to `r ∈ [0, 1]`: `"minmax"` gives
     `r = (I − min I)/(max I − min I)` (`r = 0` where `max I = min I`: no information;
     also where the span is subnormal), `"rank"` the element's rank over (size − 1)
     (ties share the lowest rank; the integer rank is divided, so `r` is exact up to
     its one rounding, also above 2^24 elements), `"none"` `r = 0` (sensitivity-blind
     noise). `r` is exactly 0 at `min I` and 1 at `max I`.
  5. Amplitude: `a = λ_t · std(θ_W) · (1 − r)`, or `λ_t · std(θ_W) · r` with
     `direction="inverse"`; `std(θ_W)` is the population standard deviation of the
     matrix and `λ_t = noise_scale`, or `noise_scale(count)` for a schedule (count: the
     steps taken before this one, as for optax learning-rate schedules).
  6. Noise: `n = a ⊙ ε`, ε i.i.d. U(−1/2, 1/2) (`"uniform"`) or N(0, 1) (`"gaussian"`),
     one key per selected leaf, split from half of the state's key.
  7. Output: `inner_updates + n` on selected leaves, `inner_updates` elsewhere, so that
     `optax.apply_updates` gives `θ + inner_updates + n` when `pats` is the last
     transformation of a chain.

  One pass (`statistics="previous"`): steps 4-5 take per-matrix statistics that the
  update before took of its inputs, `r = clip((I − min I′)/(max I′ − min I′), 0, 1)`
  (`r = 0` where that span is below the smallest normal float, as above; `r = 1` where
  `I = max I′`) and `a = λ_t · std(θ′_W) · (1 − r)`. `θ′` are the params the update before
  was given, and `I′` the importance it read from the state, which the update two before
  wrote (before the first update `θ′` is the params given to `init`, and `I′ = 0` for the
  first two updates, whose `r` is then 0 everywhere). Each update reduces its own inputs,
  the importance it reads and θ, and keeps `min I`, `max I` and `std(θ_W)` in the state
  for the next. Nothing is then reduced before the noise, and nothing the update writes is
  read again: the EMA update, `inner`'s update, the noise and the reductions can run as
  one pass over each matrix, where `statistics="current"` first reduces the new EMA and
  then draws the noise. The numbers differ from the paper's by the lag of the statistics
  (two updates for `min I` and `max I`, one for `std(θ_W)`); `normalize="rank"` needs this
  step's whole matrix and is refused.

  Where `pats` sits: what comes after it in a chain (`optax.scale`, clipping, a second
  optimizer) transforms the noise with the updates, so put such steps inside `inner` (or
  before `pats`, where they change the gradient PATS sees as well). Wrappers that pass
  the update through (`optax.inject_hyperparams`, `optax.MultiSteps`,
  `optax.apply_if_finite`) keep it. Frozen leaves: noise goes to every leaf `mask`
  selects, also to a leaf `inner` keeps fixed (`optax.set_to_zero()` under
  `optax.multi_transform` or `optax.masked`); exclude them with
  `mask=unfrozen_mask(labels, frozen_labels=...)` (or `unfrozen_mask(frozen_mask)`),
  built from the labels or mask that freeze them.

  A leaf that stacks L layers along `layer_axis` (`[L, m, n]` from scanned layers) is L
  matrices: `min I`, `max I`, the rank and `std(θ_W)` are taken per layer, and the
  updates are those the L separate matrices would get. Statistics are computed in
  float32 at least; the updates keep `inner`'s dtypes. With `noise_scale` a Python 0 no
  noise is computed: the updates and state of `inner` are exactly its own.

  Args:
    inner: the optimizer whose updates get the noise (e.g. `optax.adamw(...)`); it
      receives the same gradients, params and extra arguments.
    noise_scale: `λ`, a float >= 0 or an optax schedule of the step count; required.
    key: a JAX PRNG key, or an int seed.
    beta1: EMA decay of the sensitivity, in [0, 1); default 0.85.
    beta2: EMA decay of the uncertainty, in [0, 1); default None (no uncertainty).
    sensitivity: "taylor" (default) or "gradient" (step 1).
    normalize: "minmax" (default), "rank" or "none" (step 4).
    direction: "normal" (default) or "inverse" (step 5).
    distribution: "uniform" (default) or "gaussian" (step 6).
    mask: which leaves get noise: None (default: weight matrices, `weight_matrix_mask`),
      a pytree of bools like params (or a prefix of it), or a callable returning one
      (e.g. `unfrozen_mask(...)`, which spares the leaves `inner` freezes). Unselected
      leaves carry no PATS state.
    layer_axis: which axis of a leaf stacks layers: None (default: every leaf is one
      matrix), an int for every leaf, a pytree of ints/None like params (or a prefix of
      it), or a callable returning one given the params.
    ema_dtype: storage dtype of `ŝ` and `û` (e.g. `jnp.bfloat16`); default None: each
      parameter's dtype.
    statistics: "current" (default: steps 4-5 use this step's `min I`, `max I` and
      `std(θ_W)`, as the paper) or "previous" (those the update before took of its
      inputs; see "One pass").

  Returns:
    An `optax.GradientTransformationExtraArgs`; `update(updates, state, params,
    **extra_args)` needs `params`. Its state is a `PatsState`.

  Raises:
    ValueError, TypeError: for unknown knob values, a negative `noise_scale`, betas out of
      [0, 1), a bad key, mask or dtype (at construction), and for mismatched pytrees,
      non-array leaves or a `layer_axis` out of range (at `init`/`update`); the message
      names the argument.

  Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> import pats_jax
    >>> params = {"w": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "b": jnp.zeros(2)}
    >>> opt = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0)
    >>> state = opt.init(params)
    >>> grads = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    >>> updates, state = opt.update(grads, state, params)
    >>> updates["b"]  # not selected: sgd's update, no noise
    Array([-0.1, -0.1], dtype=float32)
    >>> bool(jnp.all(jnp.abs(updates["w"] + 0.1) <= 0.1 * jnp.std(params["w"]) / 2))
    True
    >>> state.sensitivity["b"], state.sensitivity["w"].shape
    (MaskedNode(), (2, 2))

    `noise_scale` can be injected (and changed between steps) with
    `optax.inject_hyperparams`. It treats every callable argument as a schedule and
    every number as a hyperparameter, so a callable `mask`, an int or callable
    `layer_axis` and a dtype class (`ema_dtype=jnp.bfloat16`) must be named in
    `static_args` (or pass `ema_dtype="bfloat16"`, a string):

    >>> opt = optax.inject_hyperparams(pats_jax.pats, static_args=("mask", "ema_dtype"))(
    ...     inner=optax.sgd(0.1), noise_scale=0.1, key=0)
    >>> state = opt.init(params)
    >>> state.hyperparams["noise_scale"] = jnp.array(0.0)
    >>> updates, state = opt.update(grads, state, params)
    >>> updates["w"]
    Array([[-0.1, -0.1],
           [-0.1, -0.1]], dtype=float32)

  References:
    Zhang, Zhang, Wang, Wu, Li, `PATS: Sensitivity-aware Noisy Learning for Pretrained
    Language Models <https://arxiv.org/abs/2210.12403>`_, EMNLP 2022. The matrix-wise
    scale `std(θ_W)` and the uniform noise follow Wu et al., `NoisyTune
    <https://arxiv.org/abs/2202.12024>`_, ACL 2022.
  """
  inner = _checks.check_inner(inner)
  _checks.check_nonnegative("noise_scale", noise_scale)
  _checks.canonical_key(key)
  _checks.check_beta("beta1", beta1)
  if beta2 is not None:
    _checks.check_beta("beta2", beta2)
  _checks.check_choice("sensitivity", sensitivity, _steps.SENSITIVITIES)
  _checks.check_choice("normalize", normalize, _steps.NORMALIZATIONS)
  _checks.check_choice("direction", direction, _steps.DIRECTIONS)
  _checks.check_choice("distribution", distribution, _steps.DISTRIBUTIONS)
  if mask is not None and not callable(mask):
    jax.tree.map(_masks.as_bool, mask)
  ema_dtype = _checks.check_float_dtype("ema_dtype", ema_dtype)
  _checks.check_choice("statistics", statistics, _steps.STATISTICS)
  if statistics == "previous" and normalize == "rank":
    raise ValueError(
      "statistics='previous' needs normalize='minmax' or 'none': a rank needs the whole "
      "matrix of this step before any of its noise; use statistics='current' with 'rank'."
    )
  keep_bounds = normalize == "minmax"
  skip_noise = isinstance(noise_scale, int | float) and noise_scale == 0

  def init_fn(params: optax.Params) -> PatsState:
    _checks.array_leaves("params", params)
    emas = lambda: _masks.select(mask, params, lambda p: optax.tree.zeros_like(p, ema_dtype))
    sensitivity = emas()
    axes = _masks.resolve_layer_axes(layer_axis, params, sensitivity)  # fails early if bad
    previous = None
    if statistics == "previous":
      std = _steps.map_selected(lambda _, t, ax: _steps.leaf_std(t, ax), sensitivity, params, axes)
      zeros = (lambda: optax.tree.zeros_like(std)) if keep_bounds else lambda: None
      previous = MatrixStatistics(importance_min=zeros(), importance_max=zeros(), theta_std=std)
    return PatsState(
      count=jnp.zeros([], jnp.int32),
      key=_checks.canonical_key(key),
      sensitivity=sensitivity,
      uncertainty=None if beta2 is None else emas(),
      inner_state=inner.init(params),
      statistics=previous,
    )

  def update_fn(
    updates: optax.Updates,
    state: PatsState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, PatsState]:
    _checks.check_update_args(updates, params, "pats")
    _checks.check_state_tree("state.sensitivity", state.sensitivity, params)
    if state.uncertainty is not None:
      _checks.check_state_tree("state.uncertainty", state.uncertainty, params)
    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)

    on_selected = lambda fn, *trees: _steps.map_selected(fn, state.sensitivity, *trees)
    s = on_selected(lambda _, t, g: _steps.sensitivity(t, g, sensitivity), params, updates)  # 1
    moment = optax.tree.update_moment(s, state.sensitivity, beta1, 1)
    s_hat = optax.tree.cast_like(moment, state.sensitivity)  # 2, stored in the state's dtype
    u_hat = None
    if beta2 is not None:  # 3
      dev = jax.tree.map(lambda x, m: jnp.abs(x - m.astype(x.dtype)), s, s_hat)
      u_hat = optax.tree.cast_like(
        optax.tree.update_moment(dev, state.uncertainty, beta2, 1), state.uncertainty
      )

    imp = _importance(s_hat, u_hat)  # 3
    axes = _masks.resolve_layer_axes(layer_axis, params, s_hat)
    this_step = None
    if statistics == "previous":  # this update's inputs, reduced in its pass, kept for the next
      bounds = _read_importance_bounds(state, axes) if keep_bounds else None
      this_step = MatrixStatistics(
        importance_min=None if bounds is None else on_selected(lambda _, b: b[0], bounds),
        importance_max=None if bounds is None else on_selected(lambda _, b: b[1], bounds),
        theta_std=on_selected(lambda _, t, ax: _steps.leaf_std(t, ax), params, axes),
      )

    key, noise_key = jax.random.split(state.key)
    if not skip_noise:
      lam = noise_scale(state.count) if callable(noise_scale) else noise_scale
      if statistics == "previous":
        used = _previous_statistics(state, params, keep_bounds)
        bounds = None
        if keep_bounds:
          bounds = jax.tree.map(
            lambda lo, hi: lo if _steps.is_placeholder(lo) else (lo, hi),
            used.importance_min,
            used.importance_max,
            is_leaf=_steps.is_placeholder,
          )
        stds = used.theta_std
      else:
        bounds = _importance_bounds(moment, s_hat, imp, u_hat, axes) if keep_bounds else None
        stds = None
      amps = _amplitudes(params, imp, lam, normalize, direction, layer_axis, bounds, stds)  # 4-5
      thetas = on_selected(lambda _, t: t, params)
      noise = _steps.draw_noise(noise_key, amps, thetas, distribution)  # 6
      inner_updates = jax.tree.map(  # 7
        lambda u, n: u if _steps.is_placeholder(n) else (u.astype(n.dtype) + n).astype(u.dtype),
        inner_updates,
        noise,
      )

    return inner_updates, PatsState(
      count=optax.safe_increment(state.count),
      key=key,
      sensitivity=s_hat,
      uncertainty=u_hat,
      inner_state=inner_state,
      statistics=this_step,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _previous_statistics(state: PatsState, params: Any, keep_bounds: bool) -> MatrixStatistics:
  """`state.statistics`, checked against params, for `statistics="previous"`."""
  used = state.statistics
  if used is None or (keep_bounds and used.importance_min is None):
    raise ValueError(
      "state.statistics lacks what pats(statistics='previous') uses: the state was made by "
      "pats with other statistics or normalize options; init it with these."
    )
  _checks.check_state_tree("state.statistics.theta_std", used.theta_std, params)
  return used


def _read_importance_bounds(state: PatsState, axes: Any) -> Any:
  """`(min I, max I)` per selected leaf of `I` as the update reads it from `state`, in
  float32 at least. `I ≥ 0`, so `|I| = I`: reducing `|I|` keeps XLA from turning the float32
  reduction of a bfloat16 EMA back into a bfloat16 one, which it runs in kernels of their
  own instead of in the update's pass over the matrix."""
  read = _importance(state.sensitivity, state.uncertainty)
  return _steps.map_selected(lambda imp, axis: _steps.min_max(jnp.abs(imp), axis), read, axes)


def _importance_bounds(moment: Any, s_hat: Any, imp: Any, u_hat: Any, axes: Any) -> Any:
  """`(min I, max I)` per selected leaf, of `I` as the state stores it: without
  uncertainty from the unrounded EMA `moment` (`stored_min_max`, fused with its update)."""
  if u_hat is None:
    return _steps.map_selected(
      lambda stored, m, axis: _steps.stored_min_max(m, stored.dtype, axis), s_hat, moment, axes
    )
  return _steps.map_selected(_steps.min_max, imp, axes)


def _importance(s_hat: Any, u_hat: Any) -> Any:
  """Step 3's `I` on every selected leaf (`MaskedNode()` kept)."""
  if u_hat is None:
    return jax.tree.map(lambda s: _steps.importance(s, None), s_hat)
  return jax.tree.map(_steps.importance, s_hat, u_hat)


def _amplitudes(
  params: Any,
  importance: Any,
  lam: Any,
  normalize: str,
  direction: str,
  layer_axis: Any,
  bounds: Any = None,
  stds: Any = None,
) -> Any:
  """Steps 4-5 on every leaf where `importance` holds an array; its placeholder elsewhere.
  `bounds`: `(min I, max I)` per selected leaf ("minmax"), or None to compute them here;
  `stds`: `std(θ_W)` per selected leaf, or None to compute it from `params`."""
  axes = _masks.resolve_layer_axes(layer_axis, params, importance)
  nones = lambda: jax.tree.map(lambda _: None, axes, is_leaf=lambda x: x is None)
  bounds = nones() if bounds is None else bounds
  stds = nones() if stds is None else stds

  def one(imp: jax.Array, theta: jax.Array, axis: int | None, bound: Any, std: Any) -> jax.Array:
    r = _steps.normalize(imp, normalize, axis, bound)
    if std is None:
      return _steps.amplitude(theta, r, lam, direction, axis)
    return _steps.amplitude_from_std(std, r, lam, direction)

  return _steps.map_selected(one, importance, params, axes, bounds, stds)


def noise_amplitude(
  params: optax.Params,
  importance: optax.Params,
  *,
  noise_scale: Any,
  normalize: str = "minmax",
  direction: str = "normal",
  layer_axis: _masks.LayerAxis = None,
) -> optax.Params:
  """The per-parameter noise amplitude `a` of `pats`'s step 5 (steps 4-5 from `I`).

  The same code `pats` uses, exposed for analysis and plots.

  Args:
    params: the parameters θ.
    importance: `I` per leaf (e.g. `state.sensitivity` of a `PatsState`), with the
      structure of params; `optax.MaskedNode()` or None marks an unselected leaf.
    noise_scale: `λ`, a scalar >= 0.
    normalize, direction, layer_axis: as given to `pats`.

  Returns:
    `a` with the structure of `importance`: float32 (at least) arrays shaped like the
    parameters, placeholders kept.

  Example:
    >>> import jax.numpy as jnp
    >>> w = jnp.array([[1.0, -1.0], [1.0, -1.0]])  # std 1
    >>> noise_amplitude({"w": w}, {"w": jnp.array([[0.0, 1.0], [2.0, 4.0]])},
    ...                 noise_scale=0.2)["w"]
    Array([[0.2 , 0.15],
           [0.1 , 0.  ]], dtype=float32)
  """
  _checks.check_nonnegative("noise_scale", noise_scale)
  _checks.check_choice("normalize", normalize, _steps.NORMALIZATIONS)
  _checks.check_choice("direction", direction, _steps.DIRECTIONS)
  _checks.array_leaves("params", params)
  _checks.check_state_tree("importance", importance, params)
  amps = _amplitudes(
    params, _importance(importance, None), noise_scale, normalize, direction, layer_axis
  )
  return _steps.map_selected(lambda a, t: jnp.broadcast_to(a, t.shape), amps, params)


def find_pats_state(opt_state: Any) -> PatsState | None:
  """The `PatsState` inside an optax state (chain, inject_hyperparams, MultiSteps, ...).

  Args:
    opt_state: any optimizer state.

  Returns:
    The one `PatsState` found, or None when there is none.

  Raises:
    ValueError: when the state holds more than one `PatsState`.
  """
  is_pats = lambda x: isinstance(x, PatsState)
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_pats) if is_pats(x)]
  if len(found) > 1:
    raise ValueError(
      f"opt_state holds {len(found)} PatsStates; pass the part of the state you want."
    )
  return found[0] if found else None


def pats_statistics(
  params: optax.Params,
  opt_state: Any,
  *,
  noise_scale: optax.ScalarOrSchedule,
  normalize: str = "minmax",
  direction: str = "normal",
  layer_axis: _masks.LayerAxis = None,
  threshold: float = 0.1,
) -> dict[str, jax.Array]:
  """Summary numbers of PATS for per-step logging (jit-compatible).

  Computed with the same code as the update from `params` and the EMAs held in the
  state, over all selected parameters (each element weighing the same). Called after a
  step with the new params, it describes that step's noise up to one update of θ (with
  `statistics="previous"`, where the noise used bounds from earlier updates, `r` here is
  that of the EMA within its own bounds). With
  `layer_axis`, `r` and `a` are those of each stacked layer, so the numbers equal those
  of the same layers held as separate leaves.

  Args:
    params: the parameters.
    opt_state: a `PatsState` or any optimizer state holding exactly one.
    noise_scale, normalize, direction, layer_axis: as given to `pats`. A schedule is
      evaluated at `count − 1` (the last step taken; 0 before any step).
    threshold: the `r` below which a parameter counts as insensitive.

  Returns:
    A dict of float32 scalars: `noise_scale` (λ of the last step), `amplitude_mean`
    (mean `a`), `r_mean` (mean `r`), `r_below_<threshold>` (share of parameters with `r
    < threshold`), `sensitivity_mean` (mean `ŝ`), `uncertainty_mean` (mean `û`, when
    kept), `selected` (number of parameters that get noise).

  Raises:
    ValueError: when `opt_state` holds no `PatsState` or more than one.
  """
  state = opt_state if isinstance(opt_state, PatsState) else find_pats_state(opt_state)
  if state is None:
    raise ValueError("opt_state holds no PatsState.")
  _checks.check_choice("normalize", normalize, _steps.NORMALIZATIONS)
  _checks.check_choice("direction", direction, _steps.DIRECTIONS)
  _checks.array_leaves("params", params)
  _checks.check_state_tree("state.sensitivity", state.sensitivity, params)
  lam = noise_scale(jnp.maximum(state.count - 1, 0)) if callable(noise_scale) else noise_scale
  lam = jnp.asarray(lam, jnp.float32)
  imp = _importance(state.sensitivity, state.uncertainty)
  axes = _masks.resolve_layer_axes(layer_axis, params, imp)
  r = _steps.map_selected(
    lambda i, ax: jnp.broadcast_to(_steps.normalize(i, normalize, ax), i.shape), imp, axes
  )
  a = _steps.map_selected(
    lambda r, t, ax: _steps.amplitude(t, r, lam, direction, ax), r, params, axes
  )
  total = sum(x.size for x in jax.tree.leaves(state.sensitivity))
  mean = lambda tree, fn=lambda x: x: (
    sum((jnp.sum(fn(x), dtype=jnp.float32) for x in jax.tree.leaves(tree)), 0.0) / max(total, 1)
  )
  stats = {
    "noise_scale": lam,
    "amplitude_mean": mean(a),
    "r_mean": mean(r),
    f"r_below_{threshold:g}": mean(r, lambda x: x < threshold),
    "sensitivity_mean": mean(state.sensitivity),
  }
  if state.uncertainty is not None:
    stats["uncertainty_mean"] = mean(state.uncertainty)
  stats = {k: jnp.asarray(v, jnp.float32) for k, v in stats.items()}
  return {**stats, "selected": jnp.asarray(total, jnp.float32)}

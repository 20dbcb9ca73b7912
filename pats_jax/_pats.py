"""PATS (Perturbation According To Sensitivity) as an optax transformation."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pats_jax import _checks, _masks, _steps


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
  """

  count: jax.Array
  key: jax.Array
  sensitivity: optax.Params
  uncertainty: optax.Params | None
  inner_state: optax.OptState


def _masked(entry: Any) -> bool:
  return isinstance(entry, optax.MaskedNode)


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
  ema_dtype: Any = None,
  batch_reductions: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""PATS: adds noise to `inner`'s updates, less to parameters the task is sensitive to.

  Per step t and per selected leaf W, with θ the parameters before the step and g the
  raw gradient given to `update` (before `inner` sees it); numbering as in
  `PATS_SPEC.md`:

  1. Sensitivity `s = |θ ⊙ g|` (`sensitivity="taylor"`) or `|g|` (`"gradient"`).
  2. Smoothing `ŝ ← β1·ŝ + (1−β1)·s`, `ŝ = 0` before step 1.
  3. With `beta2`: `û ← β2·û + (1−β2)·|s − ŝ|` (new ŝ), importance `I = ŝ ⊙ û`;
     without: `I = ŝ`.
  4. Normalise within the leaf to `r ∈ [0, 1]`: `"minmax"` `(I − min I)/(max I − min I)`
     (0 where `max I = min I`), `"rank"` rank/(size − 1) (ties share the lowest rank),
     `"none"` `r = 0`.
  5. Amplitude `a = λ_t · std(θ_W) · (1 − r)` (`direction="inverse"`: `r` in place of
     `1 − r`), `std` the population standard deviation of the leaf and `λ_t =
     noise_scale`, or `noise_scale(count)` for a schedule (count = steps before this one,
     as for optax learning-rate schedules).
  6. Noise `n = a ⊙ ε`, ε i.i.d. U(−1/2, 1/2) (`"uniform"`) or N(0, 1) (`"gaussian"`),
     from a key split off the state's key; one key per selected leaf.
  7. Output `inner_updates + n` on selected leaves, `inner_updates` elsewhere.

  Statistics are computed in float32 at least; the updates keep `inner`'s dtypes. With
  `noise_scale` a Python 0 no noise is computed: the updates are `inner`'s, exactly.

  Args:
    inner: the optimizer whose updates get the noise (e.g. `optax.adamw(...)`); it
      receives the same gradients, params and extra arguments.
    noise_scale: `λ`, a float >= 0 or an optax schedule of the step count.
    key: a JAX PRNG key, or an int seed.
    beta1: EMA decay of the sensitivity, in [0, 1).
    beta2: EMA decay of the uncertainty, in [0, 1); None (default) turns it off.
    sensitivity: "taylor" or "gradient" (step 1).
    normalize: "minmax", "rank" or "none" (step 4).
    direction: "normal" or "inverse" (step 5).
    distribution: "uniform" or "gaussian" (step 6).
    mask: which leaves get noise: None (weight matrices, `weight_matrix_mask`), a pytree
      of bools like params (or a prefix of it), or a callable returning one. Unselected
      leaves carry no PATS state.
    ema_dtype: storage dtype of `ŝ` and `û` (e.g. `jnp.bfloat16`); None: each
      parameter's dtype.
    batch_reductions: compute the per-leaf statistics `std(θ_W)` and `min I`, `max I`
      in one batched reduction per group of same-shaped leaves instead of one per leaf
      (fewer kernels, for GPU/TPU where the update is launch-bound; equal up to the
      float32 rounding of the sums). Off by default: no gain measured yet.

  Returns:
    An `optax.GradientTransformationExtraArgs`; `update(updates, state, params,
    **extra_args)` needs `params`. Its state is a `PatsState`.

  Raises:
    ValueError, TypeError: for unknown knob values, a negative `noise_scale`, betas out of
      [0, 1), a bad key, mask or dtype (at construction), and for mismatched pytrees or
      non-array leaves (at `init`/`update`); the message names the argument.

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
    `optax.inject_hyperparams`. It treats every callable argument as a schedule, so a
    callable `mask` or a dtype class (`ema_dtype=jnp.bfloat16`) must be named in
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
    Language Models <https://arxiv.org/abs/2210.12403>`_, EMNLP 2022; Wu et al., NoisyTune,
    ACL 2022.
  """
  inner = _checks.check_inner("inner", inner)
  _checks.check_scale_or_schedule("noise_scale", noise_scale)
  _checks.check_key(key)
  _checks.check_beta("beta1", beta1)
  if beta2 is not None:
    _checks.check_beta("beta2", beta2)
  _checks.check_choice("sensitivity", sensitivity, _steps.SENSITIVITIES)
  _checks.check_choice("normalize", normalize, _steps.NORMALIZATIONS)
  _checks.check_choice("direction", direction, _steps.DIRECTIONS)
  _checks.check_choice("distribution", distribution, _steps.DISTRIBUTIONS)
  if mask is not None and not callable(mask):
    jax.tree.map(_masks.as_bool, mask)  # raises TypeError for a non-bool leaf
  ema_dtype = _checks.check_float_dtype("ema_dtype", ema_dtype)
  batch_reductions = _checks.check_bool("batch_reductions", batch_reductions)
  skip_noise = _checks.is_static_zero(noise_scale)

  def init_fn(params: optax.Params) -> PatsState:
    _checks.array_leaves("params", params)
    return PatsState(
      count=jnp.zeros([], jnp.int32),
      key=_checks.canonical_key(key),
      sensitivity=_masks.masked_zeros(mask, params, dtype=ema_dtype),
      uncertainty=None if beta2 is None else _masks.masked_zeros(mask, params, dtype=ema_dtype),
      inner_state=inner.init(params),
    )

  def update_fn(
    updates: optax.Updates,
    state: PatsState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, PatsState]:
    if params is None:
      raise ValueError("pats needs params: call update(updates, state, params).")
    grads, treedef = _checks.array_leaves("updates", updates)
    thetas = _checks.same_structure("params", params, "updates", treedef)
    _checks.matching_shapes("updates", grads, "params", thetas)
    s_entries = _checks.state_entries("state.sensitivity", state.sensitivity, treedef)
    u_entries = (
      None
      if state.uncertainty is None
      else _checks.state_entries("state.uncertainty", state.uncertainty, treedef)
    )

    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    outs = _checks.same_structure("the updates of inner", inner_updates, "updates", treedef)

    idx = _masks.selected_indices(s_entries)
    sel_thetas = [thetas[i] for i in idx]
    s = [_steps.sensitivity(thetas[i], grads[i], sensitivity) for i in idx]  # step 1
    s_hat, u_hat = _steps.update_emas(  # steps 2-3
      s,
      [s_entries[i] for i in idx],
      None if u_entries is None else [u_entries[i] for i in idx],
      beta1,
      beta2,
    )

    key, noise_key = jax.random.split(state.key)
    if not skip_noise and idx:
      lam = noise_scale(state.count) if callable(noise_scale) else noise_scale
      imps = [  # step 3
        _steps.importance(s_hat[j], None if u_hat is None else u_hat[j]) for j in range(len(idx))
      ]
      bounds = (
        _steps.per_leaf(_steps.min_max, imps, batch_reductions)
        if normalize == "minmax"
        else [None] * len(imps)
      )
      stds = _steps.per_leaf(_steps.leaf_std, sel_thetas, batch_reductions)
      amps = [
        _steps.amplitude(theta, _steps.normalize(imp, normalize, b), lam, direction, std)
        for theta, imp, b, std in zip(sel_thetas, imps, bounds, stds, strict=True)  # steps 4-5
      ]
      noise = _steps.draw_noise(noise_key, sel_thetas, amps, distribution)  # step 6
      outs = list(outs)
      for i, n in zip(idx, noise, strict=True):  # step 7
        outs[i] = (outs[i].astype(n.dtype) + n).astype(outs[i].dtype)
      inner_updates = treedef.unflatten(outs)

    new_state = PatsState(
      count=optax.safe_increment(state.count),
      key=key,
      sensitivity=_masks.replace_at(s_entries, idx, s_hat, treedef),
      uncertainty=None if u_hat is None else _masks.replace_at(u_entries, idx, u_hat, treedef),
      inner_state=inner_state,
    )
    return inner_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def noise_amplitude(
  params: optax.Params,
  importance: optax.Params,
  *,
  noise_scale: Any,
  normalize: str = "minmax",
  direction: str = "normal",
) -> optax.Params:
  """The per-parameter noise amplitude `a` of spec step 5 (steps 4-5 from `I`).

  The same code `pats` uses, exposed for analysis and plots.

  Args:
    params: the parameters θ.
    importance: `I` per leaf (e.g. `state.sensitivity` of a `PatsState`), with the
      structure of params; `optax.MaskedNode()` or None marks an unselected leaf.
    noise_scale: `λ`, a scalar >= 0.
    normalize: "minmax", "rank" or "none" (step 4).
    direction: "normal" or "inverse" (step 5).

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
  _, treedef = _checks.array_leaves("params", params)
  thetas = treedef.flatten_up_to(params)
  entries = _checks.state_entries("importance", importance, treedef)

  def one(theta: jax.Array, imp: Any) -> Any:
    if imp is None or _masked(imp):
      return imp
    r = _steps.normalize(_steps.importance(imp, None), normalize)
    a = _steps.amplitude(theta, r, noise_scale, direction)
    return jnp.broadcast_to(a, theta.shape)

  return treedef.unflatten([one(t, e) for t, e in zip(thetas, entries, strict=True)])


def find_pats_state(opt_state: Any) -> PatsState | None:
  """The `PatsState` inside an optax state (chain, inject_hyperparams, MultiSteps, ...).

  Args:
    opt_state: any optimizer state.

  Returns:
    The one `PatsState` found, or None when there is none.

  Raises:
    ValueError: when the state holds more than one `PatsState`.
  """
  found = [
    x
    for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, PatsState))
    if isinstance(x, PatsState)
  ]
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
  threshold: float = 0.1,
) -> dict[str, jax.Array]:
  """Summary numbers of PATS for per-step logging (jit-compatible).

  Computed with the same code as the update from `params` and the EMAs held in the
  state, over all selected parameters (each element weighing the same). Called after a
  step with the new params, it describes that step's noise up to one update of θ.

  Args:
    params: the parameters.
    opt_state: a `PatsState` or any optimizer state holding exactly one.
    noise_scale, normalize, direction: as given to `pats`. A schedule is evaluated at
      `count − 1` (the last step taken; 0 before any step).
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
  _, treedef = _checks.array_leaves("params", params)
  thetas = treedef.flatten_up_to(params)
  s_entries = _checks.state_entries("state.sensitivity", state.sensitivity, treedef)
  u_entries = (
    [None] * len(thetas)
    if state.uncertainty is None
    else _checks.state_entries("state.uncertainty", state.uncertainty, treedef)
  )
  step = jnp.maximum(state.count - 1, 0)
  lam = jnp.asarray(noise_scale(step) if callable(noise_scale) else noise_scale, jnp.float32)

  total = 0
  sums = {
    "amplitude_mean": 0.0,
    "r_mean": 0.0,
    "below": 0.0,
    "sensitivity_mean": 0.0,
    "uncertainty_mean": 0.0,
  }
  for theta, sh, uh in zip(thetas, s_entries, u_entries, strict=True):
    if _masked(sh):
      continue
    imp = _steps.importance(sh, uh)
    r = jnp.broadcast_to(_steps.normalize(imp, normalize), sh.shape)
    a = _steps.amplitude(theta, r, lam, direction)
    total += sh.size
    sums["amplitude_mean"] += jnp.sum(a, dtype=jnp.float32)
    sums["r_mean"] += jnp.sum(r, dtype=jnp.float32)
    sums["below"] += jnp.sum(r < threshold, dtype=jnp.float32)
    sums["sensitivity_mean"] += jnp.sum(sh, dtype=jnp.float32)
    if uh is not None:
      sums["uncertainty_mean"] += jnp.sum(uh, dtype=jnp.float32)
  denom = max(total, 1)
  stats = {"noise_scale": lam}
  stats.update({k: jnp.asarray(v, jnp.float32) / denom for k, v in sums.items()})
  stats[f"r_below_{threshold:g}"] = stats.pop("below")
  if state.uncertainty is None:
    del stats["uncertainty_mean"]
  stats["selected"] = jnp.asarray(total, jnp.float32)
  return stats

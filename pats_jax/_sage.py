"""SAGE (sensitivity-guided adaptive learning rate): a per-parameter baseline for PATS."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pats_jax import _checks, _masks, _steps


class SageState(NamedTuple):
  """State of `sage`.

  Attributes:
    count: int32 scalar, the number of steps taken.
    sensitivity: the EMA `Ī` of `|θ ⊙ g|`: an array per selected leaf,
      `optax.MaskedNode()` elsewhere.
    inner_state: the state of the wrapped optimizer.
  """

  count: jax.Array
  sensitivity: optax.Params
  inner_state: optax.OptState


def sage(
  inner: optax.GradientTransformation,
  *,
  beta3: float = 0.85,
  eps: float = 1e-12,
  mask: _masks.MaskOrFn = None,
  ema_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""SAGE: scales `inner`'s step per parameter by its sensitivity's uncertainty.

  Per step t and selected leaf, θ the parameters before the step, g the raw gradient:

  - `I = |θ ⊙ g|` (the same code as PATS' step 1),
  - `Ī ← β3·Ī + (1−β3)·I`, `Ī_bc = Ī / (1 − β3^t)`,
  - `U = |I − Ī_bc|`,
  - `updates = inner_updates ⊙ U / (Ī_bc + eps)`; unselected leaves get `inner_updates`.

  `inner` sees the raw gradient, and its whole step is scaled: anything `inner` adds,
  weight decay included, is scaled with it. The paper's AdamW-SAGE scales the Adam step only
  and applies the decoupled decay `−lr·wd·θ` unscaled: wrap `optax.scale_by_adam` alone and
  chain the decay and the learning rate after it, as `sage_adamw` does. Wrapping all of
  `optax.adamw` (`sage_adamw(..., scale_weight_decay=True)`) scales the decay too.

  At t = 1, `Ī_bc = I` so `U = 0` (up to rounding): the first step is zero on selected
  leaves, as the formula says. Use a learning rate 2-5× the usual (the paper's advice).

  Args:
    inner: the optimizer whose step is scaled (the paper: Adam, see above).
    beta3: EMA decay of the sensitivity, in [0, 1).
    eps: added to `Ī_bc` in the denominator, >= 0 (the reference code's `1e-12`, the square
      of its Adam epsilon).
    mask: which leaves are scaled: None (`encoder_linear_mask`: the linear layers of the
      encoder's layers, weights and biases, as the paper's code selects them),
      `all_leaves_mask` (every leaf), a pytree of bools like params (or a prefix of it), or
      a callable returning one; a mask that selects no leaf is a ValueError at `init`.
    ema_dtype: storage dtype of `Ī`; None: each parameter's dtype.

  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update` needs `params`; its state
    is a `SageState`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import pats_jax
    >>> opt = pats_jax.sage(optax.sgd(1.0), mask=pats_jax.all_leaves_mask)
    >>> params = jnp.array([1.0, 2.0])
    >>> state = opt.init(params)
    >>> _, state = opt.update(jnp.array([1.0, 1.0]), state, params)
    >>> updates, state = opt.update(jnp.array([3.0, 1.0]), state, params)
    >>> jnp.round(updates, 3)  # Ī_bc = [2.081, 2], U = [0.919, 0], g = [3, 1]
    Array([-1.325, -0.   ], dtype=float32)

  References:
    Liang et al., `No Parameters Left Behind: Sensitivity Guided Adaptive Learning Rate
    for Training Large Transformer Models <https://arxiv.org/abs/2202.02664>`_, ICLR 2022.
  """
  inner = _checks.check_inner(inner)
  _checks.check_beta("beta3", beta3)
  _checks.check_nonnegative("eps", eps)
  if mask is not None and not callable(mask):
    jax.tree.map(_masks.as_bool, mask)
  ema_dtype = _checks.check_float_dtype("ema_dtype", ema_dtype)

  def init_fn(params: optax.Params) -> SageState:
    _checks.array_leaves("params", params)
    sensitivity = _masks.select(
      mask,
      params,
      lambda p: optax.tree.zeros_like(p, ema_dtype),
      default=_masks.encoder_linear_mask,
    )
    if not jax.tree.leaves(sensitivity):  # A MaskedNode has no leaves.
      raise ValueError(
        "sage's mask selects no leaf of these params, so SAGE would change nothing (the "
        "default, pats_jax.encoder_linear_mask, selects the linear layers inside "
        "params['encoder'] layer_<i>, layers or layer/<i>); pass "
        "mask=pats_jax.all_leaves_mask to scale every leaf, or a mask of your own."
      )
    return SageState(
      count=jnp.zeros([], jnp.int32), sensitivity=sensitivity, inner_state=inner.init(params)
    )

  def update_fn(
    updates: optax.Updates,
    state: SageState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, SageState]:
    _checks.check_update_args(updates, params, "sage")
    _checks.check_state_tree("state.sensitivity", state.sensitivity, params)
    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)

    count = optax.safe_increment(state.count)
    sens = _steps.map_selected(
      lambda _, t, g: _steps.sensitivity(t, g, "taylor"), state.sensitivity, params, updates
    )
    avg = optax.tree.cast_like(
      optax.tree.update_moment(sens, state.sensitivity, beta3, 1), state.sensitivity
    )

    def scale(i: jax.Array, i_avg: jax.Array, u: jax.Array) -> jax.Array:  # U / (Ī_bc + eps)
      i_bc = optax.tree.bias_correction(i_avg.astype(i.dtype), beta3, count)
      factor = jnp.abs(i - i_bc) / (i_bc + eps)
      return (u.astype(factor.dtype) * factor).astype(u.dtype)

    out = jax.tree.map(
      lambda u, i, i_avg: u if _steps.is_placeholder(i) else scale(i, i_avg, u),
      inner_updates,
      sens,
      avg,
    )
    return out, SageState(count=count, sensitivity=avg, inner_state=inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

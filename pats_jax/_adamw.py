"""The ready optimizers: AdamW with the usual decay mask, and PATS around it."""

from __future__ import annotations

from typing import Any

import jax
import optax

from pats_jax import _masks
from pats_jax._pats import pats


def adamw(
  learning_rate: optax.ScalarOrSchedule,
  *,
  weight_decay: float = 0.01,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  decay_mask: _masks.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  """AdamW as Hugging Face `run_flax_glue.py` sets it up: no decay on biases, LayerNorm.

  Args:
    learning_rate: a float or an optax schedule.
    weight_decay: decoupled weight decay, applied to the leaves `decay_mask` selects.
    b1, b2, eps: Adam's parameters (`eps=1e-6` as in `run_flax_glue.py`).
    decay_mask: which leaves get weight decay: None (`weight_matrix_mask`: matrices that
      are not biases or normalisation parameters), a pytree of bools, or a callable.

  Returns:
    `optax.adamw(...)` with that mask.

  Example:
    >>> import jax.numpy as jnp
    >>> import pats_jax
    >>> opt = pats_jax.adamw(1e-3)
    >>> state = opt.init({"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)})
  """
  return optax.adamw(
    learning_rate,
    b1=b1,
    b2=b2,
    eps=eps,
    weight_decay=weight_decay,
    mask=_masks.weight_matrix_mask if decay_mask is None else decay_mask,
  )


def pats_adamw(
  learning_rate: optax.ScalarOrSchedule,
  *,
  weight_decay: float = 0.01,
  noise_scale: optax.ScalarOrSchedule,
  key: jax.Array | int,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  decay_mask: _masks.MaskOrFn = None,
  beta1: float = 0.85,
  beta2: float | None = None,
  sensitivity: str = "taylor",
  normalize: str = "minmax",
  direction: str = "normal",
  distribution: str = "uniform",
  mask: _masks.MaskOrFn = None,
  layer_axis: _masks.LayerAxis = None,
  ema_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
  """PATS around `adamw`: `pats(adamw(learning_rate, ...), noise_scale=..., key=...)`.

  Args:
    learning_rate, weight_decay, b1, b2, eps, decay_mask: as for `adamw`.
    noise_scale, key, beta1, beta2, sensitivity, normalize, direction, distribution,
      mask, layer_axis, ema_dtype: as for `pats` (`mask` selects the noised leaves).

  Returns:
    An `optax.GradientTransformationExtraArgs` with a `PatsState` state.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import pats_jax
    >>> opt = pats_jax.pats_adamw(2e-5, noise_scale=0.1, key=jax.random.key(0))
    >>> params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    >>> state = opt.init(params)
    >>> type(state).__name__
    'PatsState'
  """
  return pats(
    adamw(learning_rate, weight_decay=weight_decay, b1=b1, b2=b2, eps=eps, decay_mask=decay_mask),
    noise_scale=noise_scale,
    key=key,
    beta1=beta1,
    beta2=beta2,
    sensitivity=sensitivity,
    normalize=normalize,
    direction=direction,
    distribution=distribution,
    mask=mask,
    layer_axis=layer_axis,
    ema_dtype=ema_dtype,
  )

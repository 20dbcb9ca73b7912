"""The ready optimizers: AdamW with the usual decay mask, and PATS and SAGE around it."""

from __future__ import annotations

from typing import Any

import jax
import optax

from pats_jax import _masks
from pats_jax._pats import pats
from pats_jax._sage import sage


def _decay_mask_or_default(decay_mask: _masks.MaskOrFn) -> _masks.MaskOrFn:
  return _masks.weight_matrix_mask if decay_mask is None else decay_mask


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
    mask=_decay_mask_or_default(decay_mask),
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
  statistics: str = "current",
) -> optax.GradientTransformationExtraArgs:
  """PATS around `adamw`: `pats(adamw(learning_rate, ...), noise_scale=..., key=...)`.

  Args:
    learning_rate, weight_decay, b1, b2, eps, decay_mask: as for `adamw`.
    noise_scale, key, beta1, beta2, sensitivity, normalize, direction, distribution,
      mask, layer_axis, ema_dtype, statistics: as for `pats` (`mask` selects the noised
      leaves).

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
    statistics=statistics,
  )


def sage_adamw(
  learning_rate: optax.ScalarOrSchedule,
  *,
  weight_decay: float = 0.01,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-6,
  decay_mask: _masks.MaskOrFn = None,
  beta3: float = 0.85,
  sensitivity_eps: float = 1e-12,
  mask: _masks.MaskOrFn = None,
  ema_dtype: Any = None,
  scale_weight_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""AdamW-SAGE: `adamw` whose Adam step `sage` scales per parameter.

  With `a` Adam's bias-corrected step `m̂ / (√v̂ + eps)` (moments of the raw gradient) and
  `F = U / (Ī_bc + sensitivity_eps)` SAGE's factor on the leaves `mask` selects (1 elsewhere):

  - `scale_weight_decay=False` (the paper's code): `updates = −lr·(F ⊙ a + wd·θ)`, the
    decoupled decay unscaled; built as `optax.adamw` with `sage` around its
    `optax.scale_by_adam` only.
  - `scale_weight_decay=True`: `updates = −lr·F ⊙ (a + wd·θ)`, i.e. `sage(adamw(...))`.

  `wd` applies to the leaves `decay_mask` selects. The reference code applies the decay to
  the parameters after the Adam step and with the peak learning rate; here, as in every
  AdamW of this library, it is `−lr(t)·wd·θ` on the parameters before the step.

  Args:
    learning_rate, weight_decay, b1, b2, eps, decay_mask: as for `adamw`.
    beta3, mask, ema_dtype: as for `sage` (`mask` selects the scaled leaves; None: the
      linear layers of the encoder's layers, `encoder_linear_mask`).
    sensitivity_eps: `sage`'s `eps`, added to `Ī_bc`.
    scale_weight_decay: whether SAGE's factor also scales the weight decay (see above).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose `update` needs `params`.

  Example:
    >>> import jax.numpy as jnp
    >>> import pats_jax
    >>> opt = pats_jax.sage_adamw(
    ...   0.1, weight_decay=0.5, beta3=0.5, mask=pats_jax.all_leaves_mask)
    >>> params = {"kernel": jnp.ones((2, 2))}
    >>> updates, _ = opt.update({"kernel": jnp.ones((2, 2))}, opt.init(params), params)
    >>> updates["kernel"]  # step 1: U = 0 (exactly, with β3 = 0.5), the decay −0.1·0.5·θ
    Array([[-0.05, -0.05],
           [-0.05, -0.05]], dtype=float32)

  References:
    Liang et al., `No Parameters Left Behind: Sensitivity Guided Adaptive Learning Rate
    for Training Large Transformer Models <https://arxiv.org/abs/2202.02664>`_, ICLR 2022.
  """
  options = {"beta3": beta3, "eps": sensitivity_eps, "mask": mask, "ema_dtype": ema_dtype}
  if scale_weight_decay:
    inner = adamw(
      learning_rate, weight_decay=weight_decay, b1=b1, b2=b2, eps=eps, decay_mask=decay_mask
    )
    return sage(inner, **options)
  return optax.chain(
    sage(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), **options),
    optax.add_decayed_weights(weight_decay, _decay_mask_or_default(decay_mask)),
    optax.scale_by_learning_rate(learning_rate),
  )

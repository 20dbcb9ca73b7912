"""NoisyTune: perturb the pretrained weights once, before fine-tuning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from pats_jax import _checks, _masks, _steps


def noisytune(
  params: optax.Params,
  key: jax.Array | int,
  *,
  scale: float = 0.15,
  mask: _masks.MaskOrFn = None,
  layer_axis: _masks.LayerAxis = None,
) -> optax.Params:
  r"""NoisyTune: every selected matrix becomes `W + U(−λ/2, λ/2) · std(W)`.

  The same amplitude and noise code as PATS' steps 5-6 with `r = 0` and `λ = scale`:
  `std(W)` is the population standard deviation of the matrix (of each layer, for a leaf
  that stacks layers along `layer_axis`), one key per selected leaf is split from `key`,
  and the noise is computed in float32 (at least) and added in it.

  Args:
    params: the pretrained parameters.
    key: a JAX PRNG key, or an int seed.
    scale: `λ`, >= 0; the paper's default 0.15.
    mask: which leaves are perturbed: None (weight matrices, `weight_matrix_mask`), a
      pytree of bools like params (or a prefix of it), or a callable returning one.
    layer_axis: which axis of a leaf stacks layers, as for `pats`; None: none does.

  Returns:
    The perturbed parameters, with the structure, dtypes and shardings of `params`.

  Example:
    >>> import jax.numpy as jnp
    >>> import pats_jax
    >>> params = {"w": jnp.array([[1.0, -1.0], [1.0, -1.0]]), "b": jnp.ones(2)}
    >>> new = pats_jax.noisytune(params, key=0, scale=0.15)
    >>> new["b"]  # a bias: untouched
    Array([1., 1.], dtype=float32)
    >>> bool(jnp.all(jnp.abs(new["w"] - params["w"]) <= 0.15 * 1.0 / 2))
    True

  References:
    Wu, Wu, Qi, Huang, Xie, `NoisyTune: A Little Noise Can Help You Finetune Pretrained
    Language Models Better <https://arxiv.org/abs/2202.12024>`_, ACL 2022.
  """
  _checks.check_nonnegative("scale", scale)
  _checks.array_leaves("params", params)
  thetas = _masks.select(mask, params)
  axes = _masks.resolve_layer_axes(layer_axis, params, thetas)
  amps = _steps.map_selected(
    lambda t, ax: _steps.amplitude(
      t, jnp.zeros((), _steps.compute_dtype(t.dtype)), scale, "normal", ax
    ),
    thetas,
    axes,
  )
  noise = _steps.draw_noise(_checks.canonical_key(key), amps, thetas, "uniform")
  return jax.tree.map(
    lambda t, n: t if _steps.is_placeholder(n) else (t.astype(n.dtype) + n).astype(t.dtype),
    params,
    noise,
  )

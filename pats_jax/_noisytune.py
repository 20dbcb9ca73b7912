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
) -> optax.Params:
  r"""NoisyTune: every selected matrix becomes `W + U(−λ/2, λ/2) · std(W)`.

  The same amplitude and noise code as PATS' steps 5-6 with `r = 0` and `λ = scale`:
  `std(W)` is the population standard deviation of the leaf, one key per selected leaf
  is split from `key`, and the noise is computed in float32 (at least) and added in it.

  Args:
    params: the pretrained parameters.
    key: a JAX PRNG key, or an int seed.
    scale: `λ`, >= 0; the paper's default 0.15.
    mask: which leaves are perturbed: None (weight matrices, `weight_matrix_mask`), a
      pytree of bools like params (or a prefix of it), or a callable returning one.

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
  leaves, treedef = _checks.array_leaves("params", params)
  selected = _masks.resolve_mask(mask, params)
  idx = [i for i, sel in enumerate(selected) if sel]
  thetas = [leaves[i] for i in idx]
  for theta in thetas:
    if not jnp.issubdtype(theta.dtype, jnp.floating):
      raise TypeError(f"mask selects a leaf of dtype {theta.dtype}; it must be floating point.")
  amps = [
    _steps.amplitude(t, jnp.zeros((), _steps.compute_dtype(t.dtype)), scale, "normal")
    for t in thetas
  ]
  noise = _steps.draw_noise(_checks.canonical_key(key), thetas, amps, "uniform")
  new = [(t.astype(n.dtype) + n).astype(t.dtype) for t, n in zip(thetas, noise, strict=True)]
  return _masks.replace_at(leaves, idx, new, treedef)

"""The arithmetic of PATS's steps, per leaf, shared by every user of it.

`pats` (the transformation), `noise_amplitude` and `pats_statistics` (analysis, logging),
`sage` (the sensitivity) and `noisytune` (matrix-wise noise) call these functions, so the
numbers a plot or a log shows are the numbers the optimizer uses.

Everything is computed in at least float32 (`compute_dtype`): bfloat16 leaves are upcast
for the arithmetic and the results cast back where they are stored.

Per-matrix statistics (`std(θ_W)`, `min I`, `max I`, the rank) take a `layer_axis`: None
treats the leaf as one matrix; an int names the axis along which the leaf stacks layers
(`[L, ...]` from scanned layers), and the statistic is then taken over the other axes, one
value per layer, kept as a broadcastable axis.
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pats_jax import _threefry

SENSITIVITIES = ("taylor", "gradient")
NORMALIZATIONS = ("minmax", "rank", "none")
DIRECTIONS = ("normal", "inverse")
DISTRIBUTIONS = ("uniform", "gaussian")
STATISTICS = ("current", "previous")


def is_placeholder(x: Any) -> bool:
  """An unselected leaf's entry in a state tree: `optax.MaskedNode()` (or None)."""
  return x is None or isinstance(x, optax.MaskedNode)


def map_selected(fn: Callable[..., Any], ref: Any, *trees: Any) -> Any:
  """`fn(ref_leaf, *leaves)` where `ref` (an EMA tree) holds an array; its placeholder
  (`MaskedNode()`, None) elsewhere. `trees` have the structure of params."""
  return jax.tree.map(
    lambda r, *xs: r if is_placeholder(r) else fn(r, *xs), ref, *trees, is_leaf=is_placeholder
  )


def compute_dtype(dtype: Any) -> Any:
  """float32 for low-precision floats, the dtype itself for float32/float64."""
  return jnp.promote_types(dtype, jnp.float32)


def sensitivity(theta: jax.Array, grad: jax.Array, kind: str) -> jax.Array:
  """Step 1: `s = |θ ⊙ g|` ("taylor") or `|g|` ("gradient"), in the compute dtype."""
  g = grad.astype(compute_dtype(jnp.promote_types(theta.dtype, grad.dtype)))
  return jnp.abs(g) if kind == "gradient" else jnp.abs(theta.astype(g.dtype) * g)


def importance(s_hat: jax.Array, u_hat: jax.Array | None) -> jax.Array:
  """Step 3: `I = ŝ ⊙ û` with uncertainty, `I = ŝ` without, in the compute dtype."""
  imp = s_hat.astype(compute_dtype(s_hat.dtype))
  return imp if u_hat is None else imp * u_hat.astype(imp.dtype)


def _reduced_axes(x: jax.Array, layer_axis: int | None) -> tuple[int, ...]:
  return tuple(d for d in range(x.ndim) if d != layer_axis)


def _sharded_in_type(x: jax.Array) -> bool:
  """Whether `x` is sharded in its type (explicit mesh axes), not only in its placement."""
  return any(p is not None for p in jax.typeof(x).sharding.spec)


def leaf_std(theta: jax.Array, layer_axis: int | None = None) -> jax.Array:
  """`std(θ_W)`: the population standard deviation of the matrix (NoisyTune's scale).

  One pass over θ: with `c` the matrix's first element and `d = θ − c`,
  `var = Σd²/n − (Σd/n)²`, two sibling sums that XLA reduces in one read of θ (and, under
  sharding, with small all-reduces). The shift keeps float32 accurate where the plain
  `Σθ²/n − (Σθ/n)²` would cancel (a large mean with a small spread): the rounding error of
  the sums is about `ε·(σ² + (μ − c)²)` against `σ²`, and one element of a matrix lies
  within a few `σ` of its mean unless it is a far outlier, so the result is `jnp.std`'s up
  to float32 rounding (for a first element `k·σ` from the mean, to about `k²·ε`). A leaf
  sharded in its type (explicit mesh axes) is shifted by its mean instead, in a second pass.
  """
  x = theta.astype(compute_dtype(theta.dtype))
  axes = _reduced_axes(x, layer_axis)
  n = math.prod(x.shape[d] for d in axes)
  if n == 0:
    return jnp.std(x, axis=axes, keepdims=True)
  if _sharded_in_type(x):  # explicit mesh axes refuse a one-element slice of a sharded axis
    shift = jnp.mean(x, axis=axes, keepdims=True)  # a second pass, as `jnp.std` makes
  else:
    shift = x[tuple(slice(0, 1) if d in axes else slice(None) for d in range(x.ndim))]
  d = x - shift
  mean = jnp.sum(d, axis=axes, keepdims=True) / n
  var = jnp.sum(d * d, axis=axes, keepdims=True) / n - mean * mean
  return jnp.sqrt(jnp.maximum(var, 0))


def min_max(x: jax.Array, layer_axis: int | None = None) -> tuple[jax.Array, jax.Array]:
  """`(min x, max x)` per matrix: two sibling reductions, which XLA fuses into one read of
  `x` (with its producer, the EMA update, where it can), and which reduce with all-reduces
  under sharding (a variadic min-max reduction is partitioned into all-gathers instead)."""
  axes = _reduced_axes(x, layer_axis)
  return jnp.min(x, axis=axes, keepdims=True), jnp.max(x, axis=axes, keepdims=True)


def _order_key(x: jax.Array) -> jax.Array:
  """Signed integers that order like the floats `x` (`-0.0` taken as `+0.0`).

  A float's bits read as a signed integer order non-negative floats correctly and negative
  ones backwards; flipping every bit but the sign of the negative ones fixes that (the usual
  radix-sort key). XLA:CPU sorts a lone integer array with a plain `<`, about 5x faster than
  floats, whose comparator implements a total order with NaNs.
  """
  bits = jnp.finfo(x.dtype).bits
  int_type = jnp.dtype(f"int{bits}")
  k = jax.lax.bitcast_convert_type(jnp.where(x == 0, jnp.zeros_like(x), x), int_type)
  return k ^ ((k >> (bits - 1)) & jnp.iinfo(int_type).max)


def _reshape(x: jax.Array, shape: tuple[int, ...], like: jax.Array | None = None) -> jax.Array:
  """`x.reshape(shape)`, sharded like `like` if given, else replicated. Only arrays sharded
  in their types (explicit mesh axes) need the sharding spelled out."""
  if like is not None and _sharded_in_type(like):
    return jnp.reshape(x, shape, out_sharding=jax.typeof(like).sharding)
  if _sharded_in_type(x):
    return jnp.reshape(x, shape, out_sharding=jax.P())
  return jnp.reshape(x, shape)


def _two_sum(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(s, e)` with `s = fl(a + b)` and `s + e = a + b` exactly (Knuth's TwoSum)."""
  s = a + b
  b_virtual = s - a
  return s, (a - (s - b_virtual)) + (b - b_virtual)


def _reciprocal_parts(m: int, dtype: Any) -> tuple[float, float, float]:
  """`1/m` as `(c_hi, c_lo, c_rest)`: `c_hi + c_lo` is `1/m` rounded to `dtype`, split so
  that `c_hi` holds at most half of its significand bits and `c_lo` the rest; `c_rest` is
  what remains of `1/m`, rounded. Exact rational arithmetic, at trace time."""
  exact = fractions.Fraction(1, m)
  c = float(np.asarray(float(exact), dtype))  # 1/m rounded to dtype
  half = (jnp.finfo(dtype).nmant + 1) // 2
  frac, exp = math.frexp(c)
  c_hi = math.ldexp(math.floor(math.ldexp(frac, half)), exp - half)
  return c_hi, c - c_hi, float(np.asarray(float(exact - fractions.Fraction(c)), dtype))


def integer_ratio(k: jax.Array, m: int, dtype: Any) -> jax.Array:
  """`k / m` for integers `0 <= k <= m` (m static), rounded once to the float `dtype`.

  Casting `k` to float32 first rounds it above 2^24 (ranks 2^24 and 2^24 + 1 become one
  number), and XLA turns the division by a constant into a product with its rounded
  reciprocal: two or three roundings, so the result can be off by an ulp. Here `k` is
  split into integer parts of at most half a significand each (exact as floats), `1/m`
  into `c_hi + c_lo + c_rest` (`_reciprocal_parts`), and `Σ_i k_i·(c_hi + c_lo)` (every
  product exact) plus `k·c_rest` is summed with TwoSum (Ogita, Rump and Oishi's Sum2):
  `k/m` to about twice `dtype`'s precision, rounded once. So the result is the correctly
  rounded `k/m` (except within about 2^-44 of halfway between two floats, where it may
  round the other way), it never decreases as `k` grows, and it is exactly 0 at `k = 0`
  and exactly 1 at `k = m`.
  """
  half = (jnp.finfo(dtype).nmant + 1) // 2
  c_hi, c_lo, c_rest = _reciprocal_parts(m, dtype)
  digits = (2**half) - 1
  parts = [
    ((k >> shift) & digits).astype(dtype) * 2.0**shift for shift in range(0, m.bit_length(), half)
  ]
  terms = [part * c for part in reversed(parts) for c in (c_hi, c_lo)]
  total, error = terms[0], jnp.zeros_like(terms[0])
  for term in terms[1:]:
    total, e = _two_sum(total, term)
    error = error + e
  return total + (error + k.astype(dtype) * c_rest)


def _rank01(imp: jax.Array, layer_axis: int | None) -> jax.Array:
  """Rank of each element in its matrix over (size − 1); ties share the lowest rank.

  `rank(x_i) = #{j : x_j < x_i}`: one sort of integer keys (`_order_key`) and one binary
  search per element (`searchsorted`, side "left", which gives ties the lowest rank, so a
  constant matrix gets `r = 0` as `minmax` gives it). Faster on XLA:CPU than an argsort
  and a scatter. Each matrix (each layer of a stacked leaf) is one row of the sort. The
  integer rank is divided by `integer_ratio`, so `r` is `rank/(size − 1)` rounded once,
  also for matrices of more than 2^24 elements (a BERT-base embedding has 23.4M).
  """
  moved = imp if layer_axis is None else jnp.moveaxis(imp, layer_axis, 0)
  rows = 1 if layer_axis is None else moved.shape[0]
  n = imp.size // max(rows, 1)
  if n <= 1:
    return jnp.zeros_like(imp)
  keys = _order_key(_reshape(moved, (rows, n)))
  search = lambda row, key: jnp.searchsorted(row, key, side="left", method="scan")
  ranks = integer_ratio(jax.vmap(search)(jnp.sort(keys, axis=-1), keys), n - 1, imp.dtype)
  ranks = _reshape(ranks, moved.shape, like=moved)
  return ranks if layer_axis is None else jnp.moveaxis(ranks, 0, layer_axis)


def normalize(
  imp: jax.Array,
  method: str,
  layer_axis: int | None = None,
  bounds: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
  """Step 4: importance to `r ∈ [0, 1]` within each matrix.

  "minmax": `(I − min I)/(max I − min I)`, and 0 where the span `max I − min I` is below
  the smallest normal float (0, subnormal or NaN: no information; CPUs flush subnormals
  to 0 anyway). XLA computes a division by a per-matrix value as a product with its
  reciprocal, rounded, so `r` is clipped to [0, 1] and set to exactly 1 where `I = max I`
  (also for an infinite `I`, where `(I − min I)·0` would be NaN). "rank": the element's
  rank over (size − 1) (`integer_ratio`). "none": 0 (a scalar, broadcast by the caller).
  `bounds`: `(min I, max I)` when the caller has them ("minmax" only), else computed here.
  """
  if method == "none":
    return jnp.zeros((), imp.dtype)
  if method == "rank":
    return _rank01(imp, layer_axis)
  lo, hi = min_max(imp, layer_axis) if bounds is None else bounds
  span = hi - lo
  informative = span >= jnp.finfo(imp.dtype).tiny  # so 1/span is finite
  r = jnp.clip((imp - lo) / jnp.where(informative, span, 1), 0, 1)
  return jnp.where(informative, jnp.where(imp == hi, 1, r), 0).astype(imp.dtype)


def stored_min_max(
  moment: jax.Array, stored_dtype: Any, layer_axis: int | None = None
) -> tuple[jax.Array, jax.Array]:
  """`min_max` of `moment` once rounded to `stored_dtype`, in the compute dtype, from the
  unrounded values: rounding to nearest never reverses an order, so the min (max) of the
  rounded values is the rounded min (max), exactly. An EMA kept in bfloat16 thus gets its
  `min I` and `max I` from float32 reductions that XLA fuses with the EMA update; reducing
  the stored values instead lets XLA reduce in bfloat16, in separate kernels."""
  lo, hi = min_max(moment.astype(compute_dtype(moment.dtype)), layer_axis)
  rounded = lambda v: v.astype(stored_dtype).astype(compute_dtype(stored_dtype))
  return rounded(lo), rounded(hi)


def amplitude(
  theta: jax.Array, r: jax.Array, noise_scale: Any, direction: str, layer_axis: int | None = None
) -> jax.Array:
  """Step 5: `a = λ · std(θ_W) · (1 − r)` ("normal") or `λ · std(θ_W) · r` ("inverse")."""
  return amplitude_from_std(leaf_std(theta, layer_axis), r, noise_scale, direction)


def amplitude_from_std(std: jax.Array, r: jax.Array, noise_scale: Any, direction: str) -> jax.Array:
  """Step 5 given the matrix's `std(θ_W)` (one value per matrix, broadcastable to `r`)."""
  weight = r if direction == "inverse" else 1 - r
  return (noise_scale * std).astype(weight.dtype) * weight


def _sample(distribution: str) -> Callable[..., jax.Array]:
  """`(key, shape, dtype, out_sharding) -> ε` for `optax.tree.random_like`, in the leaf's
  compute dtype, with `jax.random`'s values (through `_threefry` where it reproduces them)."""

  def sample(key, shape, dtype, *, out_sharding=None):
    dtype = compute_dtype(dtype)
    fast = _threefry.supported(key, shape, dtype)
    if distribution == "gaussian":
      if fast:
        return _threefry.normal(key, shape, out_sharding=out_sharding)
      return jax.random.normal(key, shape, dtype, out_sharding=out_sharding)
    if fast:
      return _threefry.uniform(key, shape, -0.5, 0.5, out_sharding=out_sharding)
    return jax.random.uniform(key, shape, dtype, -0.5, 0.5, out_sharding=out_sharding)

  return sample


def draw_noise(key: jax.Array, amplitudes: Any, thetas: Any, distribution: str) -> Any:
  """Step 6: `n = a ⊙ ε` per leaf, ε i.i.d. U(−1/2, 1/2) or N(0, 1).

  `thetas` and `amplitudes` are trees with `MaskedNode()` where no noise is drawn. One key
  per drawn leaf, in leaf order, is split from `key` (`optax.tree.random_like`), and ε takes
  the leaf's sharding, so the same key gives the same noise on any device count.
  """
  eps = optax.tree.random_like(key, thetas, sampler=_sample(distribution))
  return jax.tree.map(jnp.multiply, amplitudes, eps)

"""The per-leaf steps of `PATS_SPEC.md`, one function per idea.

Shared by `pats` (the transformation), `noise_amplitude` and `pats_statistics`
(analysis and logging), `sage` (sensitivity) and `noisytune` (matrix-wise noise), so
the numbers a plot or a log shows are the numbers the optimizer uses.

Everything is computed in at least float32 (`compute_dtype`): bfloat16 leaves are
upcast for the arithmetic and the results cast back where they are stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from pats_jax import _threefry

SENSITIVITIES = ("taylor", "gradient")
NORMALIZATIONS = ("minmax", "rank", "none")
DIRECTIONS = ("normal", "inverse")
DISTRIBUTIONS = ("uniform", "gaussian")


def compute_dtype(dtype: Any) -> Any:
  """float32 for low-precision floats, the dtype itself for float32/float64."""
  return jnp.promote_types(dtype, jnp.float32)


def sensitivity(theta: jax.Array, grad: jax.Array, kind: str) -> jax.Array:
  """Step 1: `s = |θ ⊙ g|` ("taylor") or `|g|` ("gradient"), in the compute dtype."""
  ct = compute_dtype(jnp.promote_types(theta.dtype, grad.dtype))
  g = grad.astype(ct)
  if kind == "gradient":
    return jnp.abs(g)
  return jnp.abs(theta.astype(ct) * g)


def update_emas(
  s: list[jax.Array],
  s_hat: list[jax.Array],
  u_hat: list[jax.Array] | None,
  beta1: Any,
  beta2: Any,
) -> tuple[list[jax.Array], list[jax.Array] | None]:
  """Steps 2-3: `ŝ ← β1·ŝ + (1−β1)·s`; `û ← β2·û + (1−β2)·|s − ŝ|` with the new ŝ.

  The new EMAs are returned in the dtype of the old ones (the state's storage dtype),
  and `û` uses `ŝ` as stored, so a bfloat16 state is self-consistent.
  """
  new_s_hat = optax.tree.update_moment(s, s_hat, beta1, 1)
  new_s_hat = [n.astype(o.dtype) for n, o in zip(new_s_hat, s_hat, strict=True)]
  if u_hat is None:
    return new_s_hat, None
  dev = [jnp.abs(x - m.astype(x.dtype)) for x, m in zip(s, new_s_hat, strict=True)]
  new_u_hat = optax.tree.update_moment(dev, u_hat, beta2, 1)
  new_u_hat = [n.astype(o.dtype) for n, o in zip(new_u_hat, u_hat, strict=True)]
  return new_s_hat, new_u_hat


def importance(s_hat: jax.Array, u_hat: jax.Array | None) -> jax.Array:
  """Step 3: `I = ŝ ⊙ û` with uncertainty, `I = ŝ` without, in the compute dtype."""
  ct = compute_dtype(s_hat.dtype)
  imp = s_hat.astype(ct)
  if u_hat is not None:
    imp = imp * u_hat.astype(ct)
  return imp


def _ravel(x: jax.Array) -> jax.Array:
  """`x` as 1-D; a leaf sharded in its type (explicit mesh axes) is gathered first."""
  spec = jax.typeof(x).sharding.spec
  if any(p is not None for p in spec):
    return jnp.reshape(x, (x.size,), out_sharding=jax.P())
  return jnp.reshape(x, (x.size,))


def _unravel(flat: jax.Array, like: jax.Array) -> jax.Array:
  sharding = jax.typeof(like).sharding
  if any(p is not None for p in sharding.spec):
    return jnp.reshape(flat, like.shape, out_sharding=sharding)
  return jnp.reshape(flat, like.shape)


def _order_key(x: jax.Array) -> jax.Array:
  """Signed integers that order like the floats `x` (`-0.0` taken as `+0.0`).

  A float's bits read as a signed integer order non-negative floats correctly and
  negative ones backwards; flipping every bit but the sign of the negative ones fixes
  that (the usual radix-sort key). XLA:CPU sorts a lone integer array with a plain `<`
  about 5x faster than floats, whose comparator implements a total order with NaNs.
  """
  bits = jnp.finfo(x.dtype).bits
  int_type = jnp.dtype(f"int{bits}")
  x = jnp.where(x == 0, jnp.zeros_like(x), x)
  k = jax.lax.bitcast_convert_type(x, int_type)
  return k ^ ((k >> (bits - 1)) & jnp.iinfo(int_type).max)


def _rank01(imp: jax.Array) -> jax.Array:
  """Rank of each element in its leaf divided by (size − 1); ties share the lowest rank.

  `rank(x_i) = #{j : x_j < x_i}`: one sort of integer keys (`_order_key`) and one
  binary search per element (`searchsorted`, side "left", which gives ties the lowest
  rank). Ties taking the lowest rank make a constant leaf give `r = 0` everywhere, as
  `minmax` does (no information). On XLA:CPU this made the update 2.4x faster than an argsort and a
  scatter (`scripts/bench_update.py --variants pats-rank`).
  """
  n = imp.size
  if n <= 1:
    return jnp.zeros_like(imp)
  keys = _order_key(_ravel(imp))
  ranks = jnp.searchsorted(jnp.sort(keys), keys, side="left", method="scan")
  return _unravel(ranks.astype(imp.dtype) / (n - 1), imp)


def min_max(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(min x, max x)` in one reduction (one read of `x` where XLA would do two)."""
  return jax.lax.reduce(
    (x, x),
    (jnp.array(jnp.inf, x.dtype), jnp.array(-jnp.inf, x.dtype)),
    lambda a, b: (jnp.minimum(a[0], b[0]), jnp.maximum(a[1], b[1])),
    tuple(range(x.ndim)),
  )


def normalize(
  imp: jax.Array, method: str, bounds: tuple[jax.Array, jax.Array] | None = None
) -> jax.Array:
  """Step 4: importance to `r ∈ [0, 1]` within the leaf.

  "minmax": `(I − min I)/(max I − min I)`, and 0 where `max I = min I`; `bounds` is
  `min_max(imp)` when the caller has it already (`per_leaf`). "rank": the element's rank
  over (size − 1). "none": 0 (a scalar, broadcast by the caller).
  """
  if method == "none":
    return jnp.zeros((), imp.dtype)
  if method == "rank":
    return _rank01(imp)
  lo, hi = min_max(imp) if bounds is None else bounds
  span = hi - lo
  inv = jnp.where(span > 0, 1 / jnp.where(span > 0, span, 1), 0)
  return (imp - lo) * inv


def leaf_std(theta: jax.Array) -> jax.Array:
  """`std(θ_W)`: the population standard deviation of the leaf (NoisyTune's scale)."""
  return jnp.std(theta.astype(compute_dtype(theta.dtype)))


def amplitude(
  theta: jax.Array, r: jax.Array, noise_scale: Any, direction: str, std: Any = None
) -> jax.Array:
  """Step 5: `a = λ · std(θ_W) · (1 − r)` ("normal") or `λ · std(θ_W) · r` ("inverse").

  `std` is `leaf_std(theta)` when the caller has it already (`per_leaf`).
  """
  weight = r if direction == "inverse" else 1 - r
  std = leaf_std(theta) if std is None else std
  scale = (noise_scale * std).astype(weight.dtype)
  return scale * weight


def per_leaf(fn: Callable[[jax.Array], Any], arrays: Sequence[jax.Array], batched: bool) -> list:
  """`[fn(x) for x in arrays]` for a per-leaf reduction `fn` (`leaf_std`, `min_max`).

  With `batched`, the arrays of one shape and dtype are stacked and reduced by one
  `jax.vmap(fn)`: one reduction per group instead of one per leaf (BERT-base's 77 weight
  matrices have 7 shapes). That is fewer kernel launches where a step over many small
  leaves is launch-bound (GPU, TPU), if the compiler fuses the stack into the reduction's
  input; XLA:CPU materialises some stacks and is slower (`results/PERFORMANCE.md`). The
  results equal the per-leaf ones up to the float32 rounding of the sums (the order of a
  reduction is the compiler's choice); minima and maxima are exact.
  """
  if not batched:
    return [fn(x) for x in arrays]
  groups: dict[tuple, list[int]] = {}
  for i, x in enumerate(arrays):
    groups.setdefault((x.shape, jnp.dtype(x.dtype)), []).append(i)
  out: list = [None] * len(arrays)
  for members in groups.values():
    if len(members) == 1:
      out[members[0]] = fn(arrays[members[0]])
      continue
    stacked = jax.vmap(fn)(jnp.stack([arrays[i] for i in members]))
    for k, i in enumerate(members):
      out[i] = jax.tree.map(lambda r, k=k: r[k], stacked)
  return out


def _sampler(distribution: str):
  """`(key, shape, dtype, out_sharding) -> ε` for `optax.tree.random_like`.

  ε is drawn in the compute dtype of the leaf (float32 for bfloat16 leaves), with
  `jax.random`'s values; for threefry keys through `_threefry`, which XLA fuses into the
  noise pass.
  """

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


def draw_noise(
  key: jax.Array, thetas: list[jax.Array], amplitudes: list[jax.Array], distribution: str
) -> list[jax.Array]:
  """Step 6: `n = a ⊙ ε` per leaf, ε i.i.d. U(−1/2, 1/2) or N(0, 1).

  One key per leaf is split from `key` (`optax.tree.random_like`), and ε takes the
  leaf's sharding, so the same key gives the same noise on any device count.
  """
  eps = optax.tree.random_like(key, thetas, sampler=_sampler(distribution))
  return [a * e for a, e in zip(amplitudes, eps, strict=True)]

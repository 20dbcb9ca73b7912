"""Uniform and normal samples from a threefry key, bit for bit `jax.random`'s, but fusible.

`jax.random.uniform(key, shape)` with a threefry key (the default) and
`jax_threefry_partitionable` (the default) hashes each element's linear index with
Threefry-2x32 under the key. On CPU, JAX lowers that hash as a rolled loop that writes two
uint32 arrays per round group, so drawing the noise costs several passes over memory.
Written out here as plain uint32 arithmetic, the hash is elementwise code that XLA fuses
into the pass that uses the noise. Drawing `x + λ·U(−1/2, 1/2)` on BERT-base's leaves on a
2-core CPU took 0.8 / 1.8 / 32 ms this way against 2.1 / 11 / 214 ms with
`jax.random.uniform` (768x768, 768x3072, the 30522x768 embedding table): 3-7x, and the
noise is most of PATS's cost on a CPU. On GPU/TPU, where JAX already unrolls the hash, it
changes nothing. The values are identical to `jax.random.uniform`/`normal` (tested), and,
being a function of the element's global index, the same under any sharding.

Other key implementations, dtypes other than float32, and leaves of 2**32 elements or more
fall back to `jax.random`.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def supported(key: jax.Array, shape: tuple[int, ...], dtype: Any) -> bool:
  """Whether `uniform`/`normal` below reproduce `jax.random` for these arguments."""
  return (
    str(jax.random.key_impl(key)) == "threefry2x32"
    and jax.config.jax_threefry_partitionable
    and jnp.dtype(dtype) == jnp.float32
    and math.prod(shape) < 2**32
  )


def _rotl(x: jax.Array, d: int) -> jax.Array:
  return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def _threefry2x32(k0: jax.Array, k1: jax.Array, x0: Any, x1: jax.Array) -> jax.Array:
  """The 20-round Threefry-2x32 hash of (x0, x1) under (k0, k1); returns the XOR of the
  two output words, as JAX's partitionable `random_bits` does for 32 bits."""
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  x0, x1 = x0 + ks[0], x1 + ks[1]
  for i in range(5):
    for r in _ROTATIONS[i % 2]:
      x0 = x0 + x1
      x1 = _rotl(x1, r) ^ x0
    x0 = x0 + ks[(i + 1) % 3]
    x1 = x1 + ks[(i + 2) % 3] + np.uint32(i + 1)
  return x0 ^ x1


def _linear_index(shape: tuple[int, ...], out_sharding: Any) -> jax.Array:
  """The row-major index of each element as uint32, laid out like the output."""
  sharding = (
    out_sharding
    if out_sharding is not None and any(p is not None for p in out_sharding.spec)
    else None
  )
  if not shape:
    return jnp.zeros((), jnp.uint32)
  strides = [math.prod(shape[d + 1 :]) for d in range(len(shape))]
  idx = None
  for d, stride in enumerate(strides):
    term = lax.broadcasted_iota(jnp.uint32, shape, d, out_sharding=sharding)
    term = term * np.uint32(stride) if stride != 1 else term
    idx = term if idx is None else idx + term
  return idx


def _bits(key: jax.Array, shape: tuple[int, ...], out_sharding: Any) -> jax.Array:
  k0, k1 = jnp.unstack(jax.random.key_data(key))
  # The index as a 64-bit counter (high word 0 below 2**32 elements), as JAX's iota_2x32.
  return _threefry2x32(k0, k1, np.uint32(0), _linear_index(shape, out_sharding))


def uniform(
  key: jax.Array, shape: tuple[int, ...], minval: float, maxval: float, *, out_sharding: Any = None
) -> jax.Array:
  """`jax.random.uniform(key, shape, jnp.float32, minval, maxval)`, bit for bit."""
  bits = _bits(key, shape, out_sharding)
  floats = lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32)
  lo, hi = np.float32(minval), np.float32(maxval)
  return lax.max(lo, (floats - np.float32(1.0)) * (hi - lo) + lo)


def normal(key: jax.Array, shape: tuple[int, ...], *, out_sharding: Any = None) -> jax.Array:
  """`jax.random.normal(key, shape, jnp.float32)`, bit for bit."""
  lo = np.nextafter(np.float32(-1.0), np.float32(0.0), dtype=np.float32)
  u = uniform(key, shape, lo, 1.0, out_sharding=out_sharding)
  return np.float32(np.sqrt(2)) * lax.erf_inv(u)

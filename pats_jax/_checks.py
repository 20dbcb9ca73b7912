"""Argument checks shared by the transformations: clear errors that name the argument.

Knob values are checked when a transformation is built; pytree structures and leaf types
when it is initialised or updated. Hyperparameters that `optax.inject_hyperparams` turns
into traced arrays are checked only when their value is known (not under `jit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
  """Returns `value` if it is one of `allowed`, else raises ValueError naming `name`."""
  if not isinstance(value, str) or value not in allowed:
    choices = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"{name} must be one of {choices}; got {value!r}.")
  return value


def check_bool(name: str, value: Any) -> bool:
  """Returns `value` if it is a Python or NumPy bool, else raises TypeError naming `name`."""
  if not isinstance(value, bool | np.bool_):
    raise TypeError(f"{name} must be True or False; got {value!r}.")
  return bool(value)


def concrete_float(value: Any) -> float | None:
  """The Python float of a scalar whose value is known now, None under tracing."""
  if isinstance(value, jax.core.Tracer):
    return None
  try:
    return float(value)
  except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
    return None


def check_scalar(name: str, value: Any) -> None:
  """Raises TypeError unless `value` is a real scalar (Python number or 0-d array)."""
  if isinstance(value, bool) or not (
    isinstance(value, int | float) or (hasattr(value, "shape") and np.shape(value) == ())
  ):
    raise TypeError(f"{name} must be a real scalar; got {value!r} of type {type(value).__name__}.")
  dtype = getattr(value, "dtype", None)
  if dtype is not None and not (
    jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
  ):
    raise TypeError(f"{name} must be a real scalar; got dtype {dtype}.")


def check_beta(name: str, value: Any) -> None:
  """Raises unless `value` is a scalar in [0, 1) (skipped for traced values)."""
  check_scalar(name, value)
  x = concrete_float(value)
  if x is not None and not 0.0 <= x < 1.0:
    raise ValueError(f"{name} must be in [0, 1); got {x}.")


def check_nonnegative(name: str, value: Any) -> None:
  """Raises unless `value` is a finite scalar >= 0 (skipped for traced values)."""
  check_scalar(name, value)
  x = concrete_float(value)
  if x is not None and not (math.isfinite(x) and x >= 0.0):
    raise ValueError(f"{name} must be a finite number >= 0; got {x}.")


def check_scale_or_schedule(name: str, value: Any) -> None:
  """A float >= 0 or an optax schedule (a callable of the step count)."""
  if callable(value):
    return
  check_nonnegative(name, value)


def is_static_zero(value: Any) -> bool:
  """True for a Python number equal to 0: the noise can be skipped at trace time."""
  return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def check_float_dtype(name: str, dtype: Any) -> Any:
  """None, or a floating dtype (a name such as "bfloat16" is accepted)."""
  if dtype is None:
    return None
  try:
    dt = jnp.dtype(dtype)
  except TypeError as e:
    raise TypeError(f"{name} must be a floating dtype or None; got {dtype!r}.") from e
  if not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{name} must be a floating dtype or None; got {dt}.")
  return dt


def check_inner(name: str, inner: Any) -> optax.GradientTransformationExtraArgs:
  """An optax GradientTransformation, given extra-arguments support."""
  if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
    raise TypeError(
      f"{name} must be an optax GradientTransformation (with init and update); got "
      f"{type(inner).__name__}."
    )
  return optax.with_extra_args_support(inner)


def canonical_key(key: Any) -> jax.Array:
  """A typed PRNG key from a typed key, a raw uint32 key, or an int seed."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key):
    if np.shape(key) != ():
      raise ValueError(f"key must be a single PRNG key; got shape {np.shape(key)}.")
    return key
  if isinstance(key, bool):
    raise TypeError(f"key must be a JAX PRNG key or an int seed; got {key!r}.")
  if isinstance(key, int | np.integer) or (
    dtype is not None and jnp.issubdtype(dtype, jnp.integer) and np.shape(key) == ()
  ):
    return jax.random.key(key)
  if dtype == jnp.uint32 and np.ndim(key) == 1:  # a raw key from jax.random.PRNGKey
    return jax.random.wrap_key_data(key)
  raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)) or an int seed; got {key!r}.")


def check_key(key: Any) -> None:
  """Construction-time check of `key` (values known now are also canonicalised)."""
  if isinstance(key, jax.core.Tracer):
    dtype = key.dtype
    if not (jnp.issubdtype(dtype, jax.dtypes.prng_key) or jnp.issubdtype(dtype, jnp.integer)):
      raise TypeError(f"key must be a JAX PRNG key or an int seed; got dtype {dtype}.")
    return
  canonical_key(key)


def _is_array(x: Any) -> bool:
  return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, str | bytes)


def array_leaves(name: str, tree: Any) -> tuple[list[Any], Any]:
  """Leaves and treedef of `tree`; raises TypeError naming `name` for a non-array leaf."""
  leaves, treedef = jax.tree.flatten(tree)
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not _is_array(leaf):
      raise TypeError(
        f"{name} must be a pytree of arrays; the leaf at {jax.tree_util.keystr(path)} is "
        f"{leaf!r} of type {type(leaf).__name__}."
      )
  return leaves, treedef


def same_structure(name: str, tree: Any, ref_name: str, ref_treedef: Any) -> list[Any]:
  """Leaves of `tree` after checking it has the structure `ref_treedef` of `ref_name`."""
  leaves, treedef = array_leaves(name, tree)
  if treedef != ref_treedef:
    raise ValueError(
      f"{name} and {ref_name} must have the same pytree structure; got\n  {name}: {treedef}\n"
      f"  {ref_name}: {ref_treedef}"
    )
  return leaves


def matching_shapes(name: str, leaves: Sequence[Any], ref_name: str, ref: Sequence[Any]) -> None:
  """Raises ValueError naming `name` when a leaf's shape differs from `ref`'s."""
  for i, (x, r) in enumerate(zip(leaves, ref, strict=True)):
    if tuple(x.shape) != tuple(r.shape):
      raise ValueError(
        f"{name} leaf {i} has shape {tuple(x.shape)} but the {ref_name} leaf has shape "
        f"{tuple(r.shape)}."
      )


def state_entries(name: str, tree: Any, treedef: Any) -> list[Any]:
  """Per-parameter entries of a state tree (an array or `optax.MaskedNode()` each)."""
  try:
    return treedef.flatten_up_to(tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"{name} does not match the structure of params: was the state initialised with "
      f"other params? ({e})"
    ) from e

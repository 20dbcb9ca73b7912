"""Argument checks shared by the transformations; every message names the argument.

Knob values are checked when a transformation is built, pytrees when it is initialised or
updated. A hyperparameter that `optax.inject_hyperparams` has made a traced array is
checked for its type only (its value is not known under `jit`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
  if not isinstance(value, str) or value not in allowed:
    raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")


def _scalar(name: str, value: Any) -> float | None:
  """The value of a real scalar (None when traced); TypeError for anything else."""
  dtype = getattr(value, "dtype", None)
  if (
    isinstance(value, bool)
    or not isinstance(value, int | float | np.ndarray | jax.Array | np.number)
    or np.shape(value) != ()
    or (dtype is not None and not jnp.issubdtype(dtype, jnp.number))
    or (dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating))
  ):
    raise TypeError(f"{name} must be a real scalar; got {value!r} of type {type(value).__name__}.")
  return None if isinstance(value, jax.core.Tracer) else float(value)


def check_beta(name: str, value: Any) -> None:
  x = _scalar(name, value)
  if x is not None and not 0.0 <= x < 1.0:
    raise ValueError(f"{name} must be in [0, 1); got {x}.")


def check_nonnegative(name: str, value: Any) -> None:
  """A finite scalar >= 0, or an optax schedule (a callable of the step count)."""
  if callable(value):
    return
  x = _scalar(name, value)
  if x is not None and not (math.isfinite(x) and x >= 0.0):
    raise ValueError(f"{name} must be a finite number >= 0; got {x}.")


def check_float_dtype(name: str, dtype: Any) -> Any:
  """None, or a floating dtype (a name such as "bfloat16" is accepted)."""
  if dtype is None:
    return None
  try:
    dt = jnp.dtype(dtype)
  except TypeError:
    dt = None
  if dt is None or not jnp.issubdtype(dt, jnp.floating):
    raise TypeError(f"{name} must be a floating dtype or None; got {dtype!r}.")
  return dt


def check_inner(inner: Any) -> optax.GradientTransformationExtraArgs:
  if not (callable(getattr(inner, "init", None)) and callable(getattr(inner, "update", None))):
    raise TypeError(
      f"inner must be an optax GradientTransformation (with init and update); got "
      f"{type(inner).__name__}."
    )
  return optax.with_extra_args_support(inner)


def canonical_key(key: Any) -> jax.Array:
  """A typed PRNG key from a typed key, a raw uint32 key, or an int seed (traced or not)."""
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and np.shape(key) == ():
    return key
  if dtype == jnp.uint32 and np.shape(key) == (2,):  # a raw key from jax.random.PRNGKey
    return jax.random.wrap_key_data(key)
  is_int = isinstance(key, int) or (dtype is not None and jnp.issubdtype(dtype, jnp.integer))
  if is_int and not isinstance(key, bool) and np.shape(key) == ():
    return jax.random.key(key)
  raise TypeError(f"key must be a JAX PRNG key (jax.random.key(seed)) or an int seed; got {key!r}.")


def array_leaves(name: str, tree: Any) -> tuple[list[Any], Any]:
  """Leaves and treedef of `tree`; TypeError naming `name` and the path of a non-array leaf."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
      raise TypeError(
        f"{name} must be a pytree of arrays; the leaf at {jax.tree_util.keystr(path)} is "
        f"{leaf!r} of type {type(leaf).__name__}."
      )
  return jax.tree.flatten(tree)


def check_update_args(updates: Any, params: Any, name: str) -> None:
  """`updates` and `params`: pytrees of arrays of one structure and the same shapes."""
  if params is None:
    raise ValueError(f"{name} needs params: call update(updates, state, params).")
  grads, treedef = array_leaves("updates", updates)
  thetas, params_def = array_leaves("params", params)
  if params_def != treedef:
    raise ValueError(
      f"params and updates must have the same pytree structure; got\n  params: {params_def}\n"
      f"  updates: {treedef}"
    )
  for i, (g, t) in enumerate(zip(grads, thetas, strict=True)):
    if g.shape != t.shape:
      raise ValueError(f"updates leaf {i} has shape {g.shape} but the params leaf has {t.shape}.")


def check_state_tree(name: str, tree: Any, params: Any) -> None:
  """`tree` (an EMA: arrays and `optax.MaskedNode()`/None placeholders) fits `params`."""
  try:
    jax.tree.structure(params).flatten_up_to(tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
      f"{name} does not match the structure of params: was the state initialised with "
      f"other params? ({e})"
    ) from e

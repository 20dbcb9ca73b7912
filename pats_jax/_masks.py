"""Which leaves a transformation touches: the default rule and mask resolution.

One rule serves as PATS' and NoisyTune's default noise mask and as AdamW's weight-decay
mask: a leaf is selected when it is a weight matrix, i.e. it has `ndim >= 2` and is not
named as a bias or a normalisation parameter. For BERT-style models this is exactly
Hugging Face `run_flax_glue.py`'s decay mask (no decay on biases and LayerNorm) and the
spec's default PATS mask (`ndim >= 2`). The name test only matters for models with
matrix-shaped biases (e.g. `DenseGeneral`) or normalisation weights.

A user mask follows `optax.masked`: a pytree of bools with the structure of params (or a
prefix of it, a bool then covering a whole subtree), or a callable that returns one
given the params.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

MaskOrFn = Any | Callable[[Any], Any] | None

_NORM_NAME = re.compile(r".*norm.*|ln(_.*|\d+)?")


def _path_names(path: tuple[Any, ...]) -> list[str]:
  """The string keys of a key path (dict keys, attribute names), lower-cased."""
  names = []
  for k in path:
    name = getattr(k, "key", getattr(k, "name", None))
    if isinstance(name, str) and name != "value":  # "value": an nnx Variable's payload
      names.append(name.lower())
  return names


def _is_weight_matrix(path: tuple[Any, ...], leaf: Any) -> bool:
  if len(np.shape(leaf)) < 2:
    return False
  names = _path_names(path)
  if names and (names[-1] == "bias" or names[-1].endswith("_bias")):
    return False
  return not any(_NORM_NAME.fullmatch(n) for n in names)


def weight_matrix_mask(params: Any) -> Any:
  """Selects weight matrices: `ndim >= 2`, not a bias, not a normalisation parameter.

  The default noise mask of `pats` and `noisytune` and the weight-decay mask of
  `adamw`/`pats_adamw`. A leaf is not selected when its last name is `bias` (or ends in
  `_bias`) or any name on its path contains `norm` or is `ln`, `ln_f`, `ln1`, ...

  Args:
    params: a pytree of arrays (or of `jax.ShapeDtypeStruct`).

  Returns:
    A pytree of Python bools with the structure of `params`.

  Example:
    >>> import jax.numpy as jnp
    >>> params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    ...           "LayerNorm": {"scale": jnp.ones(3), "bias": jnp.ones(3)},
    ...           "embeddings": jnp.ones((10, 3))}
    >>> weight_matrix_mask(params)
    {'LayerNorm': {'bias': False, 'scale': False}, 'dense': {'bias': False, 'kernel': True}, \
'embeddings': True}
  """
  return jax.tree_util.tree_map_with_path(_is_weight_matrix, params)


decay_mask = weight_matrix_mask  # AdamW's weight-decay mask: the same rule


def all_leaves_mask(params: Any) -> Any:
  """Selects every leaf."""
  return jax.tree.map(lambda _: True, params)


def as_bool(flag: Any) -> bool:
  """A mask leaf as a Python bool; TypeError naming `mask` otherwise."""
  if isinstance(flag, bool | np.bool_):
    return bool(flag)
  if isinstance(flag, np.ndarray | jax.Array) and flag.shape == () and flag.dtype == bool:
    if isinstance(flag, jax.core.Tracer):
      raise TypeError("mask must hold static bools; got a traced array.")
    return bool(flag)
  raise TypeError(
    f"mask must be a pytree of bools; got a leaf {flag!r} of type {type(flag).__name__}."
  )


def resolve_mask(
  mask: MaskOrFn, params: Any, *, default: Callable[[Any], Any] = weight_matrix_mask
) -> list[bool]:
  """One bool per leaf of `params` (in `jax.tree.leaves` order).

  Args:
    mask: None (use `default`), a pytree of bools with the structure of `params` or a
      prefix of it, or a callable returning one given `params`.
    params: the parameters.
    default: the rule used when `mask` is None.

  Returns:
    A list of Python bools, one per leaf of `params`.

  Raises:
    TypeError: a mask leaf is not a (static) bool.
    ValueError: the mask's structure is not a prefix of the params' structure.
  """
  tree = default(params) if mask is None else mask(params) if callable(mask) else mask
  flags: list[bool] = []

  def collect(flag: Any, subtree: Any) -> None:
    flags.extend([as_bool(flag)] * len(jax.tree.leaves(subtree)))

  try:
    jax.tree.map(collect, tree, params)
  except ValueError as e:
    raise ValueError(
      "mask must be a pytree of bools with the structure of params (or a prefix of it); "
      f"got\n  mask: {jax.tree.structure(tree)}\n  params: {jax.tree.structure(params)}"
    ) from e
  if len(flags) != len(jax.tree.leaves(params)):  # e.g. a mask leaf over an empty subtree
    raise ValueError("mask does not cover every leaf of params.")
  return flags


def masked_zeros(
  mask: MaskOrFn,
  params: Any,
  *,
  default: Callable[[Any], Any] = weight_matrix_mask,
  dtype: Any = None,
) -> Any:
  """An EMA tree: zeros (in `dtype`, else the leaf's) on selected leaves, `MaskedNode()`
  on the others, so unselected leaves carry no full-size buffer.

  Raises:
    TypeError: the mask selects a leaf that is not floating point.
  """
  leaves, treedef = jax.tree.flatten(params)
  selected = resolve_mask(mask, params, default=default)
  entries = []
  for leaf, sel in zip(leaves, selected, strict=True):
    if sel and not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(f"mask selects a leaf of dtype {leaf.dtype}; it must be floating point.")
    entries.append(optax.tree.zeros_like(leaf, dtype=dtype) if sel else optax.MaskedNode())
  return treedef.unflatten(entries)


def selected_indices(entries: list[Any]) -> list[int]:
  """Positions of the entries that hold an array (not `MaskedNode()`)."""
  return [i for i, e in enumerate(entries) if not isinstance(e, optax.MaskedNode)]


def replace_at(entries: list[Any], idx: list[int], new: list[Any], treedef: Any) -> Any:
  """`treedef.unflatten(entries)` with `entries[idx[j]]` replaced by `new[j]`."""
  entries = list(entries)
  for i, x in zip(idx, new, strict=True):
    entries[i] = x
  return treedef.unflatten(entries)

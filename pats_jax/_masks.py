"""Which leaves a transformation touches, and per-leaf knobs spread over the params.

One rule serves as PATS' and NoisyTune's default noise mask and as AdamW's weight-decay
mask: a leaf is selected when it is a weight matrix, i.e. it has `ndim >= 2` and is not
named as a bias or a normalisation parameter. For BERT-style models this is exactly
Hugging Face `run_flax_glue.py`'s decay mask (no decay on biases and LayerNorm) and the
plain `ndim >= 2` rule. The name test only matters for models with
matrix-shaped biases (e.g. `DenseGeneral`) or normalisation weights.

A user mask follows `optax.masked`: a pytree of bools with the structure of params (or a
prefix of it, a bool then covering a whole subtree), or a callable that returns one
given the params. `layer_axis` (which axis of a leaf stacks layers) is given the same way,
with ints and None in place of bools. `unfrozen_mask` builds a noise mask that spares the
leaves an inner optimizer freezes.
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
LayerAxis = int | None | Any | Callable[[Any], Any]

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
  if isinstance(flag, bool | np.bool_) or (
    isinstance(flag, np.ndarray | jax.Array)
    and not isinstance(flag, jax.core.Tracer)
    and flag.shape == ()
    and flag.dtype == bool
  ):
    return bool(flag)
  raise TypeError(
    f"mask must be a pytree of bools (static, not traced); got a leaf {flag!r} of type "
    f"{type(flag).__name__}."
  )


def broadcast_prefix(
  name: str, what: str, prefix: Any, params: Any, leaf_fn: Callable[[Any], Any]
) -> Any:
  """`prefix` (a pytree whose structure is a prefix of params') spread over every leaf of
  `params`: a tree like params holding `leaf_fn(value)` (None values kept as leaves).

  Raises:
    ValueError: the structure of `prefix` is not a prefix of the params' structure.
  """
  try:
    return jax.tree.map(
      lambda v, sub: jax.tree.map(lambda _: leaf_fn(v), sub),
      prefix,
      params,
      is_leaf=lambda x: x is None,
    )
  except ValueError as e:
    raise ValueError(
      f"{name} must be a pytree of {what} with the structure of params (or a prefix of it); got\n"
      f"  {name}: {jax.tree.structure(prefix, is_leaf=lambda x: x is None)}\n"
      f"  params: {jax.tree.structure(params)}"
    ) from e


def resolve_mask(
  mask: MaskOrFn, params: Any, *, default: Callable[[Any], Any] = weight_matrix_mask
) -> Any:
  """The mask as a pytree of Python bools with the structure of `params`.

  Args:
    mask: None (use `default`), a pytree of bools with the structure of `params` or a
      prefix of it, or a callable returning one given `params`.
    params: the parameters.
    default: the rule used when `mask` is None.

  Raises:
    TypeError: a mask leaf is not a (static) bool.
    ValueError: the mask's structure is not a prefix of the params' structure.
  """
  tree = default(params) if mask is None else mask(params) if callable(mask) else mask
  return broadcast_prefix("mask", "bools", tree, params, as_bool)


def unfrozen_mask(
  frozen: MaskOrFn, *, frozen_labels: Any = None, base: MaskOrFn = None
) -> Callable[[Any], Any]:
  """A `pats` noise mask that leaves out the leaves `inner` freezes.

  PATS adds its noise to `inner`'s updates, so a leaf that `inner` keeps fixed (a zero
  update: `optax.set_to_zero()` for a label of `optax.multi_transform`, or
  `optax.masked(optax.set_to_zero(), frozen)` in a chain) still moves by the noise unless
  the mask excludes it. This mask selects the leaves of `base` that are not frozen, from
  the same labels or mask the freezing is given.

  Args:
    frozen: which leaves are frozen. Without `frozen_labels`: a mask as `optax.masked`
      takes it, True on the frozen leaves (a pytree of bools with the structure of params
      or a prefix of it, or a callable returning one given the params). With
      `frozen_labels`: the `param_labels` of `optax.multi_transform` (a pytree of labels
      with the structure of params or a prefix of it, or a callable returning one).
    frozen_labels: the label, or a collection of labels, whose leaves are frozen (those
      `multi_transform` gives to `optax.set_to_zero()`).
    base: the leaves that may get noise, as `pats`'s `mask` takes them; None (default):
      the weight matrices (`weight_matrix_mask`).

  Returns:
    A callable `params -> pytree of bools` for `pats(mask=...)`: `base` and not frozen.
    Under `optax.inject_hyperparams`, name `mask` in `static_args`.

  Example:
    >>> import jax.numpy as jnp, optax
    >>> import pats_jax
    >>> params = {"encoder": jnp.ones((3, 3)), "head": jnp.ones((3, 2))}
    >>> labels = {"encoder": "frozen", "head": "train"}
    >>> inner = optax.multi_transform(
    ...     {"train": optax.sgd(0.1), "frozen": optax.set_to_zero()}, labels)
    >>> mask = unfrozen_mask(labels, frozen_labels="frozen")
    >>> mask(params)
    {'encoder': False, 'head': True}
    >>> opt = pats_jax.pats(inner, noise_scale=0.1, key=0, mask=mask)
    >>> updates, _ = opt.update(params, opt.init(params), params)
    >>> bool(jnp.all(updates["encoder"] == 0))
    True
  """
  if frozen_labels is None:
    is_frozen = as_bool
  else:
    labels = {frozen_labels} if isinstance(frozen_labels, str) else set(frozen_labels)
    is_frozen = lambda label: label in labels

  def mask(params: Any) -> Any:
    tree = frozen(params) if callable(frozen) else frozen
    what = "bools" if frozen_labels is None else "labels"
    frozen_tree = broadcast_prefix("frozen", what, tree, params, is_frozen)
    allowed = resolve_mask(base, params)
    return jax.tree.map(lambda a, f: a and not f, allowed, frozen_tree)

  return mask


def select(
  mask: MaskOrFn,
  params: Any,
  fn: Callable[[Any], Any] = lambda leaf: leaf,
  *,
  default: Callable[[Any], Any] = weight_matrix_mask,
) -> Any:
  """A tree like `params` with `fn(leaf)` on the leaves `mask` selects and
  `optax.MaskedNode()` on the others (so they carry no full-size buffer in a state).

  Raises:
    TypeError: the mask selects a leaf that is not floating point.
  """

  def pick(selected: bool, leaf: Any) -> Any:
    if not selected:
      return optax.MaskedNode()
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
      raise TypeError(f"mask selects a leaf of dtype {leaf.dtype}; it must be floating point.")
    return fn(leaf)

  return jax.tree.map(pick, resolve_mask(mask, params, default=default), params)


def resolve_layer_axes(layer_axis: LayerAxis, params: Any, selected: Any) -> Any:
  """`layer_axis` as a pytree with the structure of `params` holding a non-negative int
  (the axis that stacks layers) or None (one matrix, or a leaf not selected) per leaf.

  Args:
    layer_axis: None, an int, a pytree of ints/None with the structure of params (or a
      prefix of it), or a callable returning one given `params`.
    params: the parameters (arrays or `jax.ShapeDtypeStruct`s).
    selected: a tree like params, `optax.MaskedNode()` (or None) on the leaves that are
      not selected (an EMA tree): their axes are not used, nor checked.

  Raises:
    TypeError: a value is not an int or None (or is a traced array).
    ValueError: its structure does not fit params, or an axis is out of range of its leaf.
  """
  tree = layer_axis(params) if callable(layer_axis) else layer_axis

  def checked(path: Any, leaf: Any, axis: Any, sel: Any) -> int | None:
    if axis is None or sel is None or isinstance(sel, optax.MaskedNode):
      return None
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
      raise TypeError(
        f"layer_axis must hold ints or None (static; under optax.inject_hyperparams name it "
        f"in static_args); got {axis!r} of type {type(axis).__name__}."
      )
    if not -len(leaf.shape) <= axis < len(leaf.shape):
      raise ValueError(
        f"layer_axis={axis} is out of range for the leaf at {jax.tree_util.keystr(path)} of "
        f"shape {tuple(leaf.shape)}."
      )
    return int(axis) % len(leaf.shape)

  axes = broadcast_prefix("layer_axis", "ints or None", tree, params, lambda axis: axis)
  return jax.tree_util.tree_map_with_path(checked, params, axes, selected)


_ENCODER_LAYER = re.compile(r"layer_\d+|layers")


def _is_encoder_linear(path: tuple[Any, ...], leaf: Any) -> bool:
  del leaf
  names = _path_names(path)
  for i, name in enumerate(names):
    if name != "encoder":
      continue
    rest = names[i + 1 :]
    # `encoder/layer_<i>/...` or stacked `encoder/layers/...`; Hugging Face Flax:
    # `encoder/layer/<i>/...`.
    in_layer = (len(rest) > 1 and _ENCODER_LAYER.fullmatch(rest[0])) or (
      len(rest) > 2 and rest[0] == "layer" and rest[1].isdigit()
    )
    if in_layer:
      return not any(_NORM_NAME.fullmatch(n) for n in names)
  return False


def encoder_linear_mask(params: Any) -> Any:
  """Selects the linear layers, weights and biases, of a transformer encoder's layers.

  A leaf is selected when it lies inside one of the encoder's layers and no name on its path
  is a normalisation parameter's (as in `weight_matrix_mask`). The layers are found by name:
  `encoder/layer_<i>` or, stacked (`scan_layers=True`), `encoder/layers` in `pats_jax.models`;
  `encoder/layer/<i>` in Hugging Face's Flax models. Embeddings, the pooler and the head are
  not selected. For BERT and RoBERTa this is SAGE's reference selection (Liang et al. 2022,
  whose code selects the parameters named `attention.self`, `attention.output.dense`,
  `intermediate.dense` and `output.dense`): the query, key, value and attention-output
  projections and the two feed-forward projections of every layer.

  Args:
    params: a pytree of arrays (or of `jax.ShapeDtypeStruct`).

  Returns:
    A pytree of Python bools with the structure of `params`.

  Example:
    >>> import jax.numpy as jnp
    >>> dense = lambda: {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)}
    >>> norm = {"scale": jnp.ones(3), "bias": jnp.ones(3)}
    >>> params = {"encoder": {"embeddings": {"embedding": jnp.ones((10, 3))},
    ...                       "layer_0": {"intermediate": dense(), "output_norm": norm}},
    ...           "head": {"classifier": dense()}}
    >>> encoder_linear_mask(params)["encoder"]
    {'embeddings': {'embedding': False}, 'layer_0': {'intermediate': {'bias': True, \
'kernel': True}, 'output_norm': {'bias': False, 'scale': False}}}
  """
  return jax.tree_util.tree_map_with_path(_is_encoder_linear, params)

"""Hugging Face tensor names <-> our Flax parameter tree, both directions, shape-checked.

A `TensorSpec` ties one HF tensor to one leaf of our tree and says how to reshape:

  linear:  HF `weight` is `[out, in]` (torch Linear); our kernel is `[*in_dims, *out_dims]`
           (e.g. query `[embed, heads, kv]`, attention output `[heads, kv, embed]`), so
           kernel = weightᵀ reshaped, and weight = kernel reshaped to 2-D, transposed.
  bias:    HF `[out]`, ours `[*out_dims]` (reshape).
  plain:   embeddings and LayerNorm `weight`/`bias` (ours `scale`/`bias`), same shape.
  unstored: a leaf of ours that transformers does not have (e.g. the norm ModernBERT's first
           layer leaves out, kept so that every layer has the same tree): `from_hf` fills it
           with a constant, `to_hf` leaves it out.

Layer layouts: `from_hf` builds and `to_hf` reads the per-layer tree (`encoder/layer_{i}/...`);
`to_hf` also takes the stacked tree of `scan_layers=True` models (`encoder/layers/...`, every
leaf `[num_layers, ...]`), which `stack_layers` / `unstack_layers` convert to and from:

  stacked[encoder/layers/<p>][i] = per_layer[encoder/layer_{i}/<p>]   for i < num_layers.

Each family lists its tensors (`registry.Family.tensor_specs`, built with `linear`, `norm` and
`embedding`). Encoder tensors carry the family's prefix (`bert.`, `roberta.`, `electra.`,
`model.`) in a classifier checkpoint and none in a bare encoder checkpoint (e.g.
all-MiniLM-L6-v2, a `BertModel`); both load. Old checkpoints' LayerNorm `gamma`/`beta` are
read as `weight`/`bias`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pats_jax.models import registry
from pats_jax.models.config import ModelConfig

# Keys of the encoder's layer subtrees: per layer ("layer_0", ...) and stacked.
LAYER_KEY_PREFIX = "layer_"
STACKED_KEY = "layers"

# Non-persistent buffers some checkpoints contain; they are not parameters.
_BUFFER_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
  """One HF tensor and the leaf of our tree it maps to.

  Attributes:
    hf_name: the HF name without the model prefix (e.g. "embeddings.LayerNorm.weight").
    path: the leaf's path in our params tree.
    kind: "linear" (kernel), "bias", "plain" (same shape both sides), or "unstored" (no
      HF tensor: `from_hf` sets the leaf to `fill`, `to_hf` writes nothing).
    n_in: for "linear", how many leading kernel dims are input dims.
    prefixed: whether the name takes the family's prefix (`bert.`, ...) in HF checkpoints.
    in_head: part of the classification head (may be missing: newly initialised).
    per_label: a head tensor with one row per label (its shape follows num_labels).
    fill: for "unstored", the value of every entry of the leaf.
  """

  hf_name: str
  path: tuple[str, ...]
  kind: str
  n_in: int = 1
  prefixed: bool = True
  in_head: bool = False
  per_label: bool = False
  fill: float = 0.0

  def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The HF tensor shape for our leaf shape."""
    if self.kind == "linear":
      return (math.prod(shape[self.n_in :]), math.prod(shape[: self.n_in]))
    if self.kind == "bias":
      return (math.prod(shape),)
    return tuple(shape)

  def to_ours(self, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """HF tensor -> our leaf (shape already checked)."""
    if self.kind == "linear":
      return np.ascontiguousarray(tensor.T).reshape(shape)
    return tensor.reshape(shape)

  def to_hf(self, leaf: np.ndarray) -> np.ndarray:
    """Our leaf -> HF tensor."""
    if self.kind == "linear":
      return np.ascontiguousarray(leaf.reshape(math.prod(leaf.shape[: self.n_in]), -1).T)
    if self.kind == "bias":
      return leaf.reshape(-1)
    return leaf


def linear(
  hf: str, path: tuple[str, ...], n_in: int = 1, *, bias: bool = True, **kw
) -> list[TensorSpec]:
  """A torch Linear `hf` (weight, bias) <-> a Dense/DenseGeneral at `path` (kernel, bias)."""
  specs = [TensorSpec(f"{hf}.weight", (*path, "kernel"), "linear", n_in, **kw)]
  return specs + ([TensorSpec(f"{hf}.bias", (*path, "bias"), "bias", **kw)] if bias else [])


def norm(hf: str, path: tuple[str, ...], *, bias: bool = True, **kw) -> list[TensorSpec]:
  """A torch LayerNorm `hf` (weight, bias) <-> a Flax LayerNorm at `path` (scale, bias)."""
  specs = [TensorSpec(f"{hf}.weight", (*path, "scale"), "plain", **kw)]
  return specs + ([TensorSpec(f"{hf}.bias", (*path, "bias"), "plain", **kw)] if bias else [])


def unstored(path: tuple[str, ...], fill: float) -> TensorSpec:
  """A leaf at `path` that no HF checkpoint holds: loaded as `fill` everywhere, never saved."""
  return TensorSpec("", path, "unstored", fill=fill)


def embedding(hf: str, path: tuple[str, ...], **kw) -> list[TensorSpec]:
  """A torch Embedding `hf` <-> a Flax Embed at `path`."""
  return [TensorSpec(f"{hf}.weight", (*path, "embedding"), "plain", **kw)]


def tensor_specs(config: ModelConfig) -> list[TensorSpec]:
  """Every tensor of the family's sequence classifier and its place in our tree."""
  return registry.get(config.model_type).tensor_specs(config)


def _canonical_name(name: str) -> str:
  """Old TF-converted names: LayerNorm.gamma/beta -> LayerNorm.weight/bias."""
  if "LayerNorm." in name:
    if name.endswith(".gamma"):
      return name[: -len("gamma")] + "weight"
    if name.endswith(".beta"):
      return name[: -len("beta")] + "bias"
  return name


def _get(tree: Mapping, path: tuple[str, ...]):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


@dataclasses.dataclass
class Converted:
  """Result of `from_hf`.

  Attributes:
    params: our params tree (numpy arrays) for every tensor used.
    missing_head: head tensors the checkpoint lacks, named as `to_hf` writes them.
    unused: checkpoint tensor names that map to nothing in our model.
  """

  params: dict
  missing_head: list[str]
  unused: list[str]


def from_hf(
  tensors: Mapping[str, np.ndarray],
  config: ModelConfig,
  shapes: Mapping,
  *,
  source: str,
  skip_head: bool = False,
) -> Converted:
  """Maps HF checkpoint tensors onto our params tree.

  Args:
    tensors: HF name -> array, as read from the checkpoint.
    config: the model config.
    shapes: our params tree with leaves having `.shape` (e.g. from `jax.eval_shape`).
    source: the checkpoint file, named in errors.
    skip_head: ignore the checkpoint's head tensors (they are reported unused).

  Returns:
    The converted params, the missing head tensors and the unused tensors.

  Raises:
    ValueError: a tensor has the wrong shape, or an encoder tensor is missing.
  """
  base = registry.get(config.model_type).hf_prefix + "."
  canonical = {_canonical_name(k): k for k in tensors}
  has_prefix = any(k.startswith(base) for k in canonical)
  used: set[str] = set()
  params: dict = {}
  missing_encoder: list[str] = []
  missing_head: list[str] = []
  bad_shapes: list[str] = []
  head_mismatch = False
  for spec in tensor_specs(config):
    if spec.kind == "unstored":
      shape = tuple(_get(shapes, spec.path).shape)
      _set(params, spec.path, np.full(shape, spec.fill, np.float32))
      continue
    saved_name = (base if spec.prefixed else "") + spec.hf_name
    name = (base if spec.prefixed and has_prefix else "") + spec.hf_name
    if name not in canonical or (spec.in_head and skip_head):
      if spec.in_head:
        missing_head.append(saved_name)
      else:
        missing_encoder.append(name)
      continue
    original = canonical[name]
    used.add(original)
    tensor = np.asarray(tensors[original])
    shape = tuple(_get(shapes, spec.path).shape)
    expected = spec.hf_shape(shape)
    if tuple(tensor.shape) != expected:
      head_mismatch = head_mismatch or spec.per_label
      bad_shapes.append(f"tensor {original!r} has shape {tuple(tensor.shape)}, expected {expected}")
      continue
    _set(params, spec.path, spec.to_ours(tensor, shape))
  if bad_shapes:
    more = f"; and {len(bad_shapes) - 5} more" if len(bad_shapes) > 5 else ""
    hint = (
      ". The checkpoint's classifier was trained for another number of labels: pass the "
      "matching num_labels, or reinit_head=True to start a new head"
      if head_mismatch
      else ". Is config.json the one that belongs to these weights?"
    )
    raise ValueError(
      f"{source}: {len(bad_shapes)} tensor(s) do not match config.json: "
      + "; ".join(bad_shapes[:5])
      + more
      + hint
    )
  if missing_encoder:
    raise ValueError(
      f"{source}: missing {len(missing_encoder)} tensor(s) of the {config.model_type} "
      f"encoder, e.g. {missing_encoder[:5]}; the file is incomplete or belongs to another "
      "architecture (check config.json's model_type and num_hidden_layers)"
    )
  unused = sorted(k for k in tensors if k not in used and not k.endswith(_BUFFER_SUFFIXES))
  return Converted(params, missing_head, unused)


def _layer_keys(encoder: Mapping) -> list[str]:
  """The per-layer keys of an encoder subtree in layer order ("layer_0", "layer_1", ...)."""
  index = {k: k[len(LAYER_KEY_PREFIX) :] for k in encoder if k.startswith(LAYER_KEY_PREFIX)}
  keys = sorted((k for k, i in index.items() if i.isdigit()), key=lambda k: int(index[k]))
  if keys != [f"{LAYER_KEY_PREFIX}{i}" for i in range(len(keys))]:
    raise ValueError(f"encoder layers must be layer_0 .. layer_{len(keys) - 1}, got {keys}")
  return keys


def is_stacked(params: Mapping) -> bool:
  """Whether `params` has the stacked layout (`encoder/layers`, from `scan_layers=True`)."""
  return STACKED_KEY in params.get("encoder", {})


def _stack(*leaves: Any) -> Any:
  """Leaves of the layers -> one leaf `[L, ...]` (numpy, jax, or `jax.ShapeDtypeStruct`)."""
  if all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
    shapes = {(leaf.shape, leaf.dtype) for leaf in leaves}
    if len(shapes) != 1:
      raise ValueError(f"shapes differ: {sorted(map(str, shapes))}")
    return jax.ShapeDtypeStruct((len(leaves), *leaves[0].shape), leaves[0].dtype)
  if all(isinstance(leaf, np.ndarray) for leaf in leaves):
    return np.stack(leaves)
  return jnp.stack(leaves)


def _layer_slice(leaf: Any, i: int) -> Any:
  """Slice `i` of a stacked leaf (numpy, jax, or `jax.ShapeDtypeStruct`)."""
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[i]


def stack_layers(params: Mapping) -> dict:
  """Per-layer params -> stacked params (the layout of `scan_layers=True` models).

  The subtrees `encoder/layer_0 .. layer_{L-1}` become one subtree `encoder/layers` whose
  leaves are the layers' leaves stacked on a new leading axis: `[L, ...]`. Any tree with the
  params' structure (gradients, a PATS statistic) can be stacked. Other entries are kept
  (not copied); a tree that is already stacked is returned unchanged. numpy leaves stay numpy.

  Args:
    params: the params tree (`{"encoder": ..., "head": ...}`), per-layer or stacked.

  Returns:
    The stacked tree (a new dict).
  """
  if is_stacked(params):
    return dict(params)
  encoder = dict(params["encoder"])
  keys = _layer_keys(encoder)
  if not keys:
    raise ValueError("params have no encoder layers (encoder/layer_0, ...) to stack")
  layers = [encoder.pop(key) for key in keys]
  try:
    encoder[STACKED_KEY] = jax.tree.map(_stack, *layers)
  except ValueError as e:
    raise ValueError(f"encoder layers differ in structure or shape, cannot stack: {e}") from e
  return {**params, "encoder": encoder}


def unstack_layers(params: Mapping) -> dict:
  """Stacked params -> per-layer params (the layout of HF checkpoints and `scan_layers=False`).

  The inverse of `stack_layers`: leaf `encoder/layers/<p>` of shape `[L, ...]` becomes
  `encoder/layer_{i}/<p>` = its slice `i`, for i < L. A per-layer tree is returned unchanged.

  Args:
    params: the params tree, stacked or per-layer.

  Returns:
    The per-layer tree (a new dict).
  """
  if not is_stacked(params):
    return dict(params)
  encoder = dict(params["encoder"])
  stacked = encoder.pop(STACKED_KEY)
  counts = {leaf.shape[0] for leaf in jax.tree.leaves(stacked)}
  if len(counts) != 1:
    raise ValueError(f"stacked layer leaves differ in their leading (layer) axis: {counts}")
  (count,) = counts
  for i in range(count):
    encoder[f"{LAYER_KEY_PREFIX}{i}"] = jax.tree.map(
      lambda leaf, i=i: _layer_slice(leaf, i), stacked
    )
  return {**params, "encoder": encoder}


def to_hf(params: Mapping, config: ModelConfig) -> dict[str, np.ndarray]:
  """Our params tree -> the HF sequence classifier's tensors (float32 numpy).

  `params` may be per-layer or stacked (`scan_layers=True`); stacked layers are unstacked.
  """
  base = registry.get(config.model_type).hf_prefix + "."
  params = unstack_layers(params)
  out = {}
  for spec in tensor_specs(config):
    if spec.kind == "unstored":
      continue
    try:
      leaf = np.asarray(_get(params, spec.path), dtype=np.float32)
    except KeyError as e:
      raise ValueError(f"params lack {'/'.join(spec.path)} (HF {spec.hf_name!r})") from e
    out[(base if spec.prefixed else "") + spec.hf_name] = spec.to_hf(leaf)
  return out

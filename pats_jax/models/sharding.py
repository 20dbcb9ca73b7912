"""Logical axis names of the model parameters and their mapping onto a device mesh.

Every parameter is created with `nn.with_logical_partitioning`, so it carries names for
its dimensions (e.g. a query kernel is `("embed", "heads", "kv")`). `axis_rules` maps
those names onto the mesh axes `"data"`, `"fsdp"` and `"tensor"`:

  * data parallel (`fsdp=False, tensor=False`): every parameter replicated;
  * FSDP (`fsdp=True`): the model dimension `"embed"` sharded over `"fsdp"` (every
    matrix has one; it is a multiple of 8 for BERT/RoBERTa sizes, unlike the vocab);
  * tensor parallel (`tensor=True`): attention heads and the MLP hidden dimension
    sharded over `"tensor"` (Megatron-style); the head count must divide evenly.

Use with `nn.logical_to_mesh_sharding(logical_axes(pretrained), mesh, axis_rules(...))`.

Activations are pinned too (`constrain`): the hidden states `[batch, length, embed]` that
the embeddings give and every layer passes to the next are split by rows only (`HIDDEN_AXES`,
`constrain_hidden`; `stack.run_layers` and `layers.GatheredEmbed` apply it for every family).
Without these constraints XLA's sharding propagation carries a parameter's "embed" sharding into the
activations it multiplies (a LayerNorm scale, an embedding table), and the partitioner then
has to move rows-split activations to embed-split ones, which it can only do by replicating
them ("Involuntary full rematerialization"). The constraints apply while
`activation_sharding(mesh, rules)` is active (the trainer traces its steps inside it) and do
nothing elsewhere, so a model applied on one device is unchanged.

Models loaded with `scan_layers=True` keep each kind of layer weight of all layers in one
leaf `[num_layers, ...]`; its leading axis is named `"layers"` (e.g. a query kernel is
`("layers", "embed", "heads", "kv")`) and is never sharded. `layer_axes` says, per leaf,
which axis stacks layers (0) or that none does (None): what per-layer statistics need.

References:
  Flax "Scale up Flax modules on multiple devices" (logical axis annotations);
  Shoeybi et al., "Megatron-LM", arXiv 1909.08053.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from pats_jax.models import convert

if TYPE_CHECKING:
  from pats_jax.models.loader import Pretrained

# Logical names used on parameters (and "batch"/"length" for activations).
BATCH = "batch"
LENGTH = "length"
VOCAB = "vocab"
POSITIONS = "positions"
TOKEN_TYPES = "token_types"
EMBED = "embed"
# Input side of a projection into "embed" from factorised embeddings (ELECTRA-small's
# embeddings_project, [embedding_size, hidden_size]); replicated.
EMBED_IN = "embed_in"
HEADS = "heads"
KV = "kv"
MLP = "mlp"
# Projections computed in one matmul (fused query/key/value, a gated MLP's input and gate).
FUSED = "fused"
POOLED = "pooled"
CLASSES = "classes"
# Leading axis of stacked layer parameters (`scan_layers=True`); never sharded.
LAYERS = "layers"


def axis_rules(*, fsdp: bool, tensor: bool = False) -> tuple[tuple[str, str | tuple | None], ...]:
  """Rules mapping logical axis names onto mesh axes "data", "fsdp", "tensor".

  Args:
    fsdp: shard the "embed" dimension of every parameter over mesh axis "fsdp" (and
      the batch over ("data", "fsdp")).
    tensor: shard "heads" and "mlp" over mesh axis "tensor".

  Returns:
    A tuple of `(logical_name, mesh_axis | tuple of mesh axes | None)` pairs for
    `nn.logical_to_mesh_sharding` / `nn.logical_axis_rules`. Names mapped to None are
    replicated. The mesh must have every axis named in the rules.
  """
  shard_tensor = "tensor" if tensor else None
  return (
    (BATCH, ("data", "fsdp") if fsdp else "data"),
    (LENGTH, None),
    (VOCAB, None),
    (POSITIONS, None),
    (TOKEN_TYPES, None),
    (EMBED, "fsdp" if fsdp else None),
    (EMBED_IN, None),
    (HEADS, shard_tensor),
    (KV, None),
    (MLP, shard_tensor),
    (FUSED, None),
    (POOLED, None),
    (CLASSES, None),
    (LAYERS, None),
  )


# Logical names of the hidden states `[batch, length, E]` the model pins (`constrain`): rows
# split, the model dimension never (None).
HIDDEN_AXES = (BATCH, LENGTH, None)


# The (mesh, rules) of the enclosing `activation_sharding`, None outside one.
_ACTIVATION_SHARDING: contextvars.ContextVar[tuple[Mesh, tuple] | None] = contextvars.ContextVar(
  "activation_sharding", default=None
)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Sequence[tuple[str, Any]]) -> Iterator[None]:
  """Makes `constrain` pin activations to `rules` on `mesh` while tracing inside the block."""
  token = _ACTIVATION_SHARDING.set((mesh, tuple(rules)))
  try:
    yield
  finally:
    _ACTIVATION_SHARDING.reset(token)


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
  """`x` constrained to the sharding its logical axis `names` map to under the rules of the
  enclosing `activation_sharding` (`jax.lax.with_sharding_constraint`); `x` itself outside
  one."""
  context = _ACTIVATION_SHARDING.get()
  if context is None:
    return x
  mesh, rules = context
  spec = nn.logical_to_mesh_axes(names, rules)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def gathered(weight: jax.Array) -> jax.Array:
  """`weight` gathered whole on every device (`constrain` to no split) before a use that is not
  a matmul on its split axis: an embedding lookup, a table added to activations (e.g. a
  relative-position table); `weight` itself outside `activation_sharding`."""
  return constrain(weight, (None,) * jnp.ndim(weight))


def constrain_hidden(tree: Any) -> Any:
  """`tree` with every `[batch, length, E]` array leaf pinned to `HIDDEN_AXES` (`constrain`);
  other leaves (a layer index, a mask) unchanged. What a layer passes to the next."""
  pin = lambda leaf: constrain(leaf, HIDDEN_AXES) if jnp.ndim(leaf) == 3 else leaf
  return jax.tree.map(pin, tree)


def logical_axes(pretrained: Pretrained) -> dict:
  """PartitionSpecs of logical axis names, with the same tree structure as params.

  Args:
    pretrained: a loaded model (`pats_jax.models.load`).

  Returns:
    A nested dict like `pretrained.params` whose leaves are `PartitionSpec`s of logical
    names, e.g. `PartitionSpec("embed", "heads", "kv")` for a query kernel.
  """
  module = pretrained.module
  tokens = jnp.zeros((1, 1), jnp.int32)
  init = functools.partial(module.init, deterministic=True)
  key = jax.random.key(0)
  abstract = jax.eval_shape(init, {"params": key, "dropout": key}, tokens, tokens, tokens)
  specs = nn.get_partition_spec(abstract)["params"]
  is_spec = lambda x: isinstance(x, PartitionSpec)
  if jax.tree.structure(specs, is_leaf=is_spec) != jax.tree.structure(pretrained.params):
    raise ValueError(
      "pretrained.params does not have the module's parameter tree; pass the Pretrained "
      "returned by pats_jax.models.load (params of the same model)"
    )
  return specs


def _names(leaf: Any) -> tuple | None:
  """The logical axis names of a PartitionSpec or a partitioning box, else None."""
  if isinstance(leaf, PartitionSpec):
    return tuple(leaf)
  if isinstance(leaf, nn.Partitioned):
    return tuple(leaf.names)
  return None


def layer_axes(tree: Any) -> Any:
  """Which axis of each leaf stacks the layers: 0 for stacked layer leaves, None elsewhere.

  Per-layer statistics (e.g. PATS's sensitivity per layer rather than per stacked leaf)
  reduce over every axis but this one.

  Args:
    tree: logical axis names (`logical_axes(pretrained)`: `PartitionSpec` leaves, or the
      boxed variables of `module.init`), in which case the axis named "layers" is
      reported; or a params-like tree of arrays, in which case leaves under the stacked
      subtree `encoder/layers` (`scan_layers=True`) get 0.

  Returns:
    A tree with `tree`'s dict structure whose leaves are ints or None. None is an empty
    pytree node for `jax.tree.map`; map over it with `is_leaf=lambda x: x is None`, e.g.
    `jax.tree.map(f, layer_axes(params), params, is_leaf=lambda x: x is None)`.
  """
  is_named = lambda x: _names(x) is not None

  def axis(path: tuple, leaf: Any) -> int | None:
    names = _names(leaf)
    if names is not None:
      return names.index(LAYERS) if LAYERS in names else None
    keys = [getattr(entry, "key", None) for entry in path]
    return 0 if ("encoder", convert.STACKED_KEY) in itertools.pairwise(keys) else None

  return jax.tree_util.tree_map_with_path(axis, tree, is_leaf=is_named)

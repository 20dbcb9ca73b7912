"""Runs an encoder's layers: one subtree per layer or stacked under `nn.scan`, with `nn.remat`,
and with the last layer computing the first token only.

A family's layer is a Flax module class built as `layer(*args)` and called as

  layer(x [batch, L, E], context, deterministic, first_token_only) -> [batch, L or 1, E]

where `context` is a pytree every layer reads unchanged (e.g. `layers.KeyPadding`, or that and
relative-position tables). `x` may also be a pytree carried from layer to layer, holding the
hidden states and what a layer passes on to the next (ModernBERT: the layer index, which picks
the layer's kind out of `context`); the layer then returns the same structure. `run_layers`
creates the layers under the calling module:

  scan_layers=False:  layer_0 ... layer_{L-1}, each its own subtree, e.g. query kernel [E, N, d]
  scan_layers=True:   one subtree "layers" whose leaves are stacked [L, ...] with the leading
                      logical axis "layers", run as one `nn.scan` loop (XLA compiles one body)

The stacked layout has one leaf per weight kind instead of L, and the jitted step holds one
layer body (a `while` loop) instead of L unrolled copies: compilation time and program size
stop growing with depth (cf. MaxText's `scan_layers`). `convert.stack_layers` /
`unstack_layers` map a params tree between the layouts.

`scan_layers` may also be an int k > 1: the stacked layers run k per iteration of the loop
(`nn.scan`'s `unroll`), and k >= L unrolls the loop completely. Fully unrolled, XLA compiles
every layer with no loop (static slices of the stacked leaves) while the optimizer still sees
one leaf per weight kind. The optimizer's update then takes a few kernels per weight kind
rather than per layer: on a GPU, where each kernel is a launch, that is most of the update's
kernels (`docs/performance.md`, "GPU: compiler kernel counts"). Compile time grows with depth
again, as for separate layers, and on a TPU the compiler lays the activations out less well
than for separate layers (the same document). The parameters, logits and dropout masks are
those of the loop.

With `first_token_only` (a head that reads the first token), the last layer computes its
queries, attention output, feed-forward block and norms for that token alone (keys and
values still cover every token): the same output for that token, less work. Stacked, layers
0..L-2 are scanned and the last runs alone on slice L-1 of the same stacked parameters
(`nn.map_variables`).

Every layer's input and output hidden states are pinned to rows split over the batch mesh axes
(`sharding.constrain_hidden`; a no-op outside `sharding.activation_sharding`), so that under
FSDP XLA never carries a weight's "embed" split into the activations between layers.

`remat=True` recomputes each layer in the backward pass (`nn.remat`), trading compute for
activation memory; a policy name (`REMAT_POLICIES`) keeps the matmul outputs and recomputes
only the rest. Dropout rngs are split per layer in both layouts.

References:
  Flax's lifted transforms `nn.scan`, `nn.remat`, `nn.map_variables`; MaxText (scan_layers).
"""

from __future__ import annotations

import sys
from typing import Any

import flax.linen as nn
import jax

from pats_jax.models import sharding as sh
from pats_jax.models.convert import LAYER_KEY_PREFIX, STACKED_KEY

# `remat` values that name what the backward pass keeps (`jax.checkpoint_policies`); True is
# "full". "dots" keeps every matmul output and recomputes the elementwise work between them
# (GELU, LayerNorm, softmax, dropout masks); "dots_no_batch" keeps only the outputs of matmuls
# without batch dimensions (the dense layers), so it also recomputes the attention scores.
REMAT_POLICIES = {
  "full": None,
  "dots": jax.checkpoint_policies.dots_saveable,
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def layer_class(layer: type[nn.Module], remat: bool | str) -> type[nn.Module]:
  """`layer`, or its rematerialised form (`deterministic` and `first_token_only` static).

  `remat`: False, True (recompute the whole layer) or a key of `REMAT_POLICIES`.
  """
  if not remat:
    return layer
  policy = REMAT_POLICIES["full" if remat is True else remat]
  return nn.remat(layer, static_argnums=(3, 4), prevent_cse=False, policy=policy)


def layer_layout(scan_layers: bool, unroll: int) -> bool | int:
  """The models' `scan_layers` argument for a layout and an unroll count: False (separate
  layers), True (one loop, a layer per iteration), or `unroll` layers per iteration (> 1; 0
  unrolls the whole loop: no loop, stacked parameters)."""
  if not scan_layers or unroll == 1:
    return bool(scan_layers)
  return unroll if unroll > 1 else sys.maxsize


def scan_unroll(scan_layers: bool | int, length: int) -> int:
  """Layers per iteration of the stacked loop: 1 for `scan_layers=True`, else the int, at most
  `length` (the whole loop unrolled)."""
  per_iteration = 1 if scan_layers is True else int(scan_layers)
  return max(1, min(per_iteration, length))


def _scan(
  layer: nn.Module,
  x: jax.Array,
  context: Any,
  deterministic: bool,
  length: int,
  scan_layers: bool | int = True,
):
  """Runs `layer` `length` times with `nn.scan`, its parameters stacked on a leading axis,
  `scan_unroll(scan_layers, length)` layers per iteration of the loop.

  The stacked axis is named `sharding.LAYERS` in the parameters' logical axis names; the
  params and dropout rngs are split per layer, so every layer draws its own masks.
  """

  def body(module: nn.Module, carry, context):
    return sh.constrain_hidden(module(carry, context, deterministic, False)), None

  scan = nn.scan(
    body,
    variable_axes={"params": 0},
    split_rngs={"params": True, "dropout": True},
    in_axes=(nn.broadcast,),
    length=length,
    unroll=scan_unroll(scan_layers, length),
    metadata_params={nn.PARTITION_NAME: sh.LAYERS},
  )
  x, _ = scan(layer, x, context)
  return x


def _split_last_layer(variables: dict) -> dict:
  """`{"params": stacked [L, ...]}` -> `{"params": {"first": [L-1, ...], "last": [...]}}`."""
  out = {}
  for collection, tree in variables.items():
    stacked = nn.meta.unbox(tree)
    out[collection] = {
      "first": jax.tree.map(lambda a: a[:-1], stacked),
      "last": jax.tree.map(lambda a: a[-1], stacked),
    }
  return out


class _ScannedThenFirstToken(nn.Module):
  """Layers 0..L-2 scanned over all tokens, then the last layer for the first token only.

  Applied through `nn.map_variables(..., trans_in_fn=_split_last_layer)` so that it reads
  the same stacked parameters `[L, ...]` as the full scan (the last layer's slice `[L-1]`).
  """

  layer: type[nn.Module]
  args: tuple
  num_layers: int
  remat: bool | str = False
  scan_layers: bool | int = True

  @nn.compact
  def __call__(self, x, context, deterministic: bool):
    layer = layer_class(self.layer, self.remat)
    if self.num_layers > 1:
      first = layer(*self.args, name="first")
      x = _scan(first, x, context, deterministic, self.num_layers - 1, self.scan_layers)
    return sh.constrain_hidden(layer(*self.args, name="last")(x, context, deterministic, True))


def run_layers(
  layer: type[nn.Module],
  args: tuple,
  x: jax.Array,
  context: Any,
  *,
  num_layers: int,
  deterministic: bool,
  first_token_only: bool,
  remat: bool | str,
  scan_layers: bool | int,
  initializing: bool,
) -> jax.Array:
  """Applies `num_layers` layers `layer(*args)` to `x`; call from a compact method.

  Args:
    layer: the family's layer class (see the module docstring for its call signature).
    args: its constructor arguments (config, dtypes, ...), the same for every layer.
    x: `[batch, length, E]` input of the first layer (or a pytree carry holding it).
    context: what every layer reads besides `x` (a pytree of arrays).
    num_layers: L.
    deterministic: no dropout.
    first_token_only: the last layer computes the first position only (output `[batch, 1, E]`).
    remat: recompute each layer in the backward pass: True, or a `REMAT_POLICIES` name.
    scan_layers: stacked parameters under "layers", one `nn.scan` loop (an int k > 1: k layers
      per iteration, k >= `num_layers` no loop); else (False) `layer_{i}`.
    initializing: the caller's `self.is_initializing()` (init builds the full stacked tree).

  Returns:
    The last layer's output.
  """
  x = sh.constrain_hidden(x)
  if scan_layers:
    if first_token_only and not initializing:
      split = nn.map_variables(
        _ScannedThenFirstToken, "params", trans_in_fn=_split_last_layer, mutable=False
      )
      return split(layer, args, num_layers, remat, scan_layers, name=STACKED_KEY)(
        x, context, deterministic
      )
    stacked = layer_class(layer, remat)(*args, name=STACKED_KEY)
    return _scan(stacked, x, context, deterministic, num_layers, scan_layers)
  cls = layer_class(layer, remat)
  for i in range(num_layers):
    last = i == num_layers - 1
    x = cls(*args, name=f"{LAYER_KEY_PREFIX}{i}")(
      x, context, deterministic, first_token_only and last
    )
    x = sh.constrain_hidden(x)
  return x

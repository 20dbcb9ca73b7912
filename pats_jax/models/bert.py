"""Flax linen BERT / RoBERTa encoder and the sequence classifier built on it.

One post-LayerNorm transformer encoder serves both model types; they differ only in
position ids and head (see `heads.py`):

  BERT:     positions p_t = t
  RoBERTa:  positions p_t = pad + cumsum(mask)_t · mask_t   (pad = padding index)

  h_0 = LayerNorm(word[x] + type[s] + pos[p])
  for each layer:  a = LayerNorm(h + Dropout(Attn(h) W_o))
                   h = LayerNorm(a + Dropout(act(a W_1) W_2))
  Attn(h) = softmax(Q Kᵀ / √d + mask) V, per head, padding keys masked out.

Knobs: `dtype` (compute, e.g. bfloat16) and `param_dtype` (storage, e.g. float32);
`attention` ("auto", "xla", "cudnn") picks `jax.nn.dot_product_attention`'s backend;
`remat` recomputes each layer in the backward pass (`nn.remat`); `scan_layers` stacks the
layers' parameters and runs the layers as one `nn.scan` loop (see `Encoder`). Every parameter
has logical axis names (`sharding.py`). Dropout uses the rng stream "dropout".

Layer layouts (`scan_layers`), e.g. for the query kernel of an L-layer model:

  False:  encoder/layer_0/attention/query/kernel ... encoder/layer_{L-1}/...   each [E, N, d]
  True:   encoder/layers/attention/query/kernel                               [L, E, N, d]
          logical axes ("layers", "embed", "heads", "kv"); slice i is layer i.

The stacked layout has 16 leaves for the layers instead of 16·L, and the jitted step holds
one layer body (a `while` loop) instead of L unrolled copies: compilation time and program
size stop growing with depth (cf. MaxText's `scan_layers`). `convert.stack_layers` /
`unstack_layers` map between the layouts; HF checkpoints are per-layer on disk either way.

The classifier reads only the first token of the last layer, so unless the hidden states are
asked for (`return_hidden=True`) the last layer computes its queries, attention output,
feed-forward block and LayerNorms for that token alone (keys and values still cover every
token): the logits are the same, and a step of a 6-layer model does ~14% fewer FLOPs
(10 of the last layer's 12 per-token weight matmuls, `first_token_only`).

Attention-probability dropout is not available in the fused kernels, so while training
with `attention_probs_dropout_prob > 0` attention runs through Flax's explicit softmax
(`nn.dot_product_attention`, XLA); set it to 0 to use cuDNN flash attention in training.

References:
  Devlin et al., "BERT", NAACL 2019; Liu et al., "RoBERTa", arXiv 1907.11692;
  Flax's lifted transforms `nn.scan`, `nn.remat`, `nn.map_variables`;
  transformers' `modeling_bert.py` / `modeling_roberta.py` (the numerics we match).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import heads
from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig

Dtype = Any
ATTENTION_CHOICES = ("auto", "xla", "cudnn")


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation HF means by `hidden_act` (HF "gelu" is the exact erf form)."""
  table = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_python": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
    "tanh": jnp.tanh,
  }
  if name not in table:
    raise ValueError(f"hidden_act {name!r} is not supported; supported: {sorted(table)}")
  return table[name]


def resolve_attention(attention: str, dtype: Dtype, head_dim: int) -> str:
  """The `jax.nn.dot_product_attention` implementation for the knob `attention`.

  "auto" is "cudnn" on an Ampere-or-newer GPU with a 16-bit compute dtype and a head
  width cuDNN flash attention supports (multiple of 8, at most 128), else "xla".
  """
  if attention not in ATTENTION_CHOICES:
    raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {attention!r}")
  if attention != "auto":
    return attention
  if jax.default_backend() != "gpu":
    return "xla"
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return "xla"
  if head_dim % 8 or head_dim > 128:
    return "xla"
  capability = getattr(jax.devices()[0], "compute_capability", "0")
  return "cudnn" if float(capability) >= 8.0 else "xla"


def _normal(config: ModelConfig, axes: tuple[str, ...]):
  return nn.with_logical_partitioning(nn.initializers.normal(config.initializer_range), axes)


def _zeros(axes: tuple[str, ...]):
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def layer_norm(config: ModelConfig, dtype: Dtype, param_dtype: Dtype, name: str) -> nn.LayerNorm:
  """LayerNorm over "embed" with HF's epsilon; statistics in float32, exact variance."""
  return nn.LayerNorm(
    epsilon=config.layer_norm_eps,
    dtype=dtype,
    param_dtype=param_dtype,
    use_fast_variance=False,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (sh.EMBED,)),
    bias_init=_zeros((sh.EMBED,)),
    name=name,
  )


class GatheredEmbed(nn.Embed):
  """`nn.Embed` that looks up in the whole table: under FSDP the table (split over "embed")
  is gathered first, as every other weight is, so that the rows-split ids give rows-split
  vectors; looking up in the split table would give embed-split vectors that XLA can only
  re-split by replicating them. Same parameters and values as `nn.Embed`."""

  def __call__(self, inputs: jax.Array) -> jax.Array:
    (table,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
    table = sh.constrain(table, (None, None))
    if self.num_embeddings == 1:
      vectors = jnp.broadcast_to(table, (*inputs.shape, self.features))
    else:
      vectors = jnp.take(table, inputs, axis=0)
    return sh.constrain(vectors, sh.HIDDEN_AXES)


class Embeddings(nn.Module):
  """Word + position + token-type embeddings, LayerNorm, dropout."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool):
    cfg = self.config

    def embed(num: int, axes: tuple[str, str], name: str) -> nn.Embed:
      return GatheredEmbed(
        num,
        cfg.hidden_size,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        embedding_init=_normal(cfg, axes),
        name=name,
      )

    x = embed(cfg.vocab_size, (sh.VOCAB, sh.EMBED), "word_embeddings")(input_ids)
    x = x + embed(cfg.type_vocab_size, (sh.TOKEN_TYPES, sh.EMBED), "token_type_embeddings")(
      token_type_ids
    )
    x = x + embed(cfg.max_position_embeddings, (sh.POSITIONS, sh.EMBED), "position_embeddings")(
      position_ids
    )
    x = layer_norm(cfg, self.dtype, self.param_dtype, "layer_norm")(sh.constrain(x, sh.HIDDEN_AXES))
    return sh.constrain(
      nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic), sh.HIDDEN_AXES
    )


class SelfAttention(nn.Module):
  """Multi-head self-attention with per-head q/k/v kernels `[embed, heads, kv]`."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x, mask, kv_lengths, deterministic: bool, first_token_only: bool = False):
    """Attends; `mask` is bool `[batch, 1, 1, length]`, `kv_lengths` int32 `[batch]`.

    With `first_token_only` only the first position queries (output `[batch, 1, E]`).
    """
    cfg = self.config
    shape = (cfg.num_attention_heads, cfg.head_dim)

    def project(name: str, inputs: jax.Array) -> jax.Array:
      projected = nn.DenseGeneral(
        shape,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=_normal(cfg, (sh.EMBED, sh.HEADS, sh.KV)),
        bias_init=_zeros((sh.HEADS, sh.KV)),
        name=name,
      )(inputs)
      return sh.constrain(projected, sh.HEADS_AXES)

    query = project("query", x[:, :1] if first_token_only else x)
    key, value = project("key", x), project("value", x)
    rate = cfg.attention_probs_dropout_prob
    if rate > 0.0 and not deterministic:
      out = nn.dot_product_attention(
        query,
        key,
        value,
        mask=mask,
        dropout_rng=self.make_rng("dropout"),
        dropout_rate=rate,
        deterministic=False,
        dtype=self.dtype,
        force_fp32_for_softmax=True,
      )
    elif self.implementation == "cudnn" and query.shape[1] > 1:
      # cuDNN takes padding as lengths: requires right-padded batches. A 1-token query (the
      # last layer's first token) is not a flash-attention shape (JAX 0.11 on an H200:
      # "Unsupported sequence length Q 1"): XLA does that single row below.
      out = jax.nn.dot_product_attention(
        query, key, value, key_value_seq_lengths=kv_lengths, implementation="cudnn"
      )
    else:
      out = jax.nn.dot_product_attention(query, key, value, mask=mask, implementation="xla")
    out = nn.DenseGeneral(
      cfg.hidden_size,
      axis=(-2, -1),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=_normal(cfg, (sh.HEADS, sh.KV, sh.EMBED)),
      bias_init=_zeros((sh.EMBED,)),
      name="output",
    )(sh.constrain(out, sh.HEADS_AXES))
    return sh.constrain(out, sh.HIDDEN_AXES)


class TransformerLayer(nn.Module):
  """One post-LayerNorm encoder layer: attention block then feed-forward block."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x, mask, kv_lengths, deterministic: bool, first_token_only: bool = False):
    """`[batch, L, E] -> [batch, L, E]`, or `[batch, 1, E]` (first token) if `first_token_only`."""
    cfg = self.config
    drop = nn.Dropout(cfg.hidden_dropout_prob)
    attended = SelfAttention(
      cfg, self.dtype, self.param_dtype, self.implementation, name="attention"
    )(x, mask, kv_lengths, deterministic, first_token_only)
    if first_token_only:
      x = x[:, :1]
    x = layer_norm(cfg, self.dtype, self.param_dtype, "attention_norm")(
      x + drop(attended, deterministic=deterministic)
    )
    x = sh.constrain(x, sh.HIDDEN_AXES)
    y = nn.Dense(
      cfg.intermediate_size,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=_normal(cfg, (sh.EMBED, sh.MLP)),
      bias_init=_zeros((sh.MLP,)),
      name="intermediate",
    )(x)
    y = sh.constrain(activation(cfg.hidden_act)(y), sh.MLP_AXES)
    y = nn.Dense(
      cfg.hidden_size,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=_normal(cfg, (sh.MLP, sh.EMBED)),
      bias_init=_zeros((sh.EMBED,)),
      name="output",
    )(y)
    y = sh.constrain(y, sh.HIDDEN_AXES)
    x = layer_norm(cfg, self.dtype, self.param_dtype, "output_norm")(
      x + drop(y, deterministic=deterministic)
    )
    return sh.constrain(x, sh.HIDDEN_AXES)


def _layer_class(remat: bool) -> type[nn.Module]:
  """`TransformerLayer`, or its rematerialised form (`deterministic` and the flag static)."""
  if not remat:
    return TransformerLayer
  return nn.remat(TransformerLayer, static_argnums=(4, 5), prevent_cse=False)


def _scan_layers(layer: nn.Module, x, mask, kv_lengths, deterministic: bool, length: int):
  """Runs `layer` `length` times with `nn.scan`, its parameters stacked on a leading axis.

  The stacked axis is named `sharding.LAYERS` in the parameters' logical axis names; the
  params and dropout rngs are split per layer, so every layer draws its own masks.
  """

  def body(module: nn.Module, carry, mask, kv_lengths):
    return module(carry, mask, kv_lengths, deterministic, False), None

  scan = nn.scan(
    body,
    variable_axes={"params": 0},
    split_rngs={"params": True, "dropout": True},
    in_axes=(nn.broadcast, nn.broadcast),
    length=length,
    metadata_params={nn.PARTITION_NAME: sh.LAYERS},
  )
  x, _ = scan(layer, x, mask, kv_lengths)
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

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"
  remat: bool = False

  @nn.compact
  def __call__(self, x, mask, kv_lengths, deterministic: bool):
    cfg = self.config
    layer_cls = _layer_class(self.remat)
    args = (cfg, self.dtype, self.param_dtype, self.implementation)
    if cfg.num_hidden_layers > 1:
      first = layer_cls(*args, name="first")
      x = _scan_layers(first, x, mask, kv_lengths, deterministic, cfg.num_hidden_layers - 1)
    return layer_cls(*args, name="last")(x, mask, kv_lengths, deterministic, True)


class Encoder(nn.Module):
  """Embeddings and `num_hidden_layers` transformer layers; returns `[b, L, E]`.

  With `first_token_only=True` the last layer computes the first position only: `[b, 1, E]`.

  Parameter layouts (`scan_layers`):

    False: one subtree per layer, `encoder/layer_{i}/attention/query/kernel` `[E, N, d]`, ...
    True:  one subtree for all layers, `encoder/layers/attention/query/kernel` `[L, E, N, d]`:
           every leaf of a layer stacked on a leading axis (logical name "layers"), and the
           layers run as one `nn.scan` loop, so XLA compiles the layer body once.

  With `scan_layers` and `first_token_only`, layers 0..L-2 are scanned and the last layer
  runs alone on slice `L-1` of the same stacked parameters (`nn.map_variables`).
  """

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention: str = "auto"
  remat: bool = False
  scan_layers: bool = False

  @nn.compact
  def __call__(
    self, input_ids, attention_mask, token_type_ids, deterministic: bool, first_token_only=False
  ):
    cfg = self.config
    length = input_ids.shape[1]
    offset = cfg.pad_token_id + 1 if cfg.model_type == "roberta" else 0
    if length + offset > cfg.max_position_embeddings:
      raise ValueError(
        f"sequence length {length} exceeds the model's {cfg.max_position_embeddings - offset} "
        "positions; truncate inputs (max_length) to at most that"
      )
    mask = attention_mask.astype(jnp.bool_)
    if cfg.model_type == "roberta":
      # HF counts non-padding tokens from padding_idx + 1; padding gets padding_idx.
      keep = mask.astype(jnp.int32)
      position_ids = jnp.cumsum(keep, axis=1) * keep + cfg.pad_token_id
      token_type_ids = jnp.zeros_like(input_ids)
    else:
      position_ids = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), input_ids.shape)
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    x = Embeddings(cfg, self.dtype, self.param_dtype, name="embeddings")(
      input_ids, token_type_ids, position_ids, deterministic
    )
    implementation = resolve_attention(self.attention, self.dtype, cfg.head_dim)
    key_mask = mask[:, None, None, :]
    kv_lengths = mask.sum(axis=1, dtype=jnp.int32)
    args = (cfg, self.dtype, self.param_dtype, implementation)
    if self.scan_layers:
      if first_token_only and not self.is_initializing():
        split = nn.map_variables(
          _ScannedThenFirstToken, "params", trans_in_fn=_split_last_layer, mutable=False
        )
        return split(*args, self.remat, name="layers")(x, key_mask, kv_lengths, deterministic)
      layers = _layer_class(self.remat)(*args, name="layers")
      return _scan_layers(layers, x, key_mask, kv_lengths, deterministic, cfg.num_hidden_layers)
    layer_cls = _layer_class(self.remat)
    last = cfg.num_hidden_layers - 1
    for i in range(cfg.num_hidden_layers):
      x = layer_cls(*args, name=f"layer_{i}")(
        x, key_mask, kv_lengths, deterministic, first_token_only and i == last
      )
    return x


class SequenceClassifier(nn.Module):
  """BERT / RoBERTa encoder with the standard sequence-classification head.

  `apply({"params": p}, input_ids, attention_mask, token_type_ids, deterministic=True)`
  returns float32 logits `[batch, num_labels]` (regression when num_labels == 1);
  with `return_hidden=True` it returns `(logits, last_hidden_states [batch, L, E])`.
  Without it the last layer computes the first token only (the head reads nothing else):
  the same logits for less work. In training the dropout masks of that layer then have the
  first token's shape, so the draws differ from the full computation's (same distribution).

  `scan_layers=True` stacks the layers' parameters under `encoder/layers` (leaves
  `[num_layers, ...]`) and runs them with `nn.scan` (see `Encoder`); the logits are the same
  as with the per-layer layout, and dropout masks are drawn per layer in both.
  """

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention: str = "auto"
  remat: bool = False
  scan_layers: bool = False

  @nn.compact
  def __call__(
    self,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
    token_type_ids: jax.Array | None = None,
    deterministic: bool = True,
    return_hidden: bool = False,
  ):
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    hidden = Encoder(
      self.config,
      self.dtype,
      self.param_dtype,
      self.attention,
      self.remat,
      self.scan_layers,
      name="encoder",
    )(input_ids, attention_mask, token_type_ids, deterministic, not return_hidden)
    head = heads.make_head(self.config, self.dtype, self.param_dtype, name="head")
    logits = head(hidden, deterministic=deterministic).astype(jnp.float32)
    return (logits, hidden) if return_hidden else logits

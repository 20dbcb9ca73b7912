"""The ModernBERT family (config.json `model_type` "modernbert").

A pre-norm encoder with rotary positions, global and sliding-window attention layers, a gated
(GeGLU) feed-forward block and, by default, no biases:

  h_0 = Dropout_emb(LayerNorm(word[x]))            no position or token-type embeddings
  for layer i = 0 .. L-1:
    a = h + Dropout_att(Attn_i(N_i(h)) W_o)        N_0 = identity, N_i = LayerNorm for i > 0
    h = a + Dropout_mlp(act(u) ⊙ g) W_out,         [u, g] = LayerNorm(a) W_in  (E -> 2F, split)
  h = LayerNorm_final(h)

Attention of layer i, per head of width d, at positions t = 0 .. n-1 (right padding):

  q_t, k_s = RoPE_θ(q)_t, RoPE_θ(k)_s;   a_t = Σ_s softmax_s(q_t·k_s / √d) v_s over allowed s
  global layer (layer_types[i] = "full_attention"):     θ = global_rope_theta, every real key
  local layer ("sliding_attention"):                   θ = local_rope_theta, real keys with
                                                       |t - s| <= local_attention // 2

Old config.json files give the layer kinds as a period: layer i is global when
i % global_attn_every_n_layers == 0; newer ones list them (`layer_types`) and put the thetas in
`rope_parameters`; both are read (`ModernBertConfig.canonical_hf`).

RoPE, the rotate-half form: with ω_j = θ^(-2j/d) for j < d/2, c_t = cos(t ω ‖ t ω),
s_t = sin(t ω ‖ t ω) and x = [x1 ‖ x2] split in halves,

  RoPE_θ(x)_t = x_t ⊙ c_t + [-x2 ‖ x1]_t ⊙ s_t          (computed in float32)

Head (`ModernBertForSequenceClassification`): p = h[:, 0] ("cls" pooling) or the mean of h
over the real tokens ("mean"), then logits = Dropout_cls(LayerNorm(act(p W_d))) W_c + b_c.

Layers of two kinds in one stack. Every layer has the same parameters, so the layers stack
into one `[L, ...]` tree and `scan_layers` runs one layer body for all of them (`stack.py`;
`layer_axis` 0 for PATS). What differs between layers is data: the layer index is carried
from layer to layer with the hidden states, and each layer reads its kind from a `[L]` table,
selecting its rotary table and its window with `jnp.where`. Both masks and both rotary tables
are built once per call. The first layer's missing attention norm is the one difference in
parameters: every layer has `attention_norm`, and layer 0 does not apply it; its values are
not in transformers' checkpoints, so `load` sets them to ones (and zero bias) and
`save_pretrained` leaves them out (`convert.unstored`). Their gradient is zero.

Local attention is a banded boolean mask `[1, 1, n, n]` ANDed with the padding on the XLA
paths and given to cuDNN as a mask (added as a bias), see `layers.attend`: cuDNN's own sliding
window is one-sided when not causal.

Parameter tree of the encoder (logical axis names in brackets; E width, N heads, d = E/N,
F intermediate, V vocabulary; biases only when the config's `*_bias` flag is set):

  embeddings/word_embeddings/embedding       [V, E] (vocab, embed)
  embeddings/layer_norm/{scale,bias}         [E] (embed)
  layer_{i}/attention/qkv/{kernel,bias}      [E, 3, N, d] (embed, fused, heads, kv), [3, N, d]
  layer_{i}/attention/output/{kernel,bias}   [N, d, E] (heads, kv, embed), [E]
  layer_{i}/{attention_norm,mlp_norm}/{scale,bias}   [E]
  layer_{i}/mlp/input/{kernel,bias}          [E, 2, F] (embed, fused, mlp): input, gate
  layer_{i}/mlp/output/{kernel,bias}         [F, E] (mlp, embed)
  final_norm/{scale,bias}                    [E]

and of the head: dense/{kernel,bias} [E, E] (embed, pooled), layer_norm/{scale,bias} [E]
(pooled), classifier/{kernel,bias} [E, C] (embed, classes). A new head is initialised as in
transformers: truncated normal kernels (std initializer_range / √(2L) for `dense`,
E^-1/2 for `classifier`, cut at `initializer_cutoff_factor` std), zero biases, unit norms.

Dropout uses the rng stream "dropout"; `attention_dropout` is on the attention probabilities
(which takes the explicit-softmax XLA path while training, `layers.attend`) and after W_o.

References:
  Warner et al., "Smarter, Better, Faster, Longer: A Modern Bidirectional Encoder"
  (ModernBERT), arXiv 2412.13663; Su et al., "RoFormer" (rotary position embedding), arXiv
  2104.09864; Shazeer, "GLU Variants Improve Transformer", arXiv 2002.05202; transformers'
  `modeling_modernbert.py` and `ModernBertConfig` (the numerics, names and defaults we match).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pats_jax.models import convert, layers, registry, stack
from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig, check_rate, refuse_unless

Dtype = Any

GLOBAL = "full_attention"
LOCAL = "sliding_attention"
POOLINGS = ("cls", "mean")
# transformers' period of global layers when config.json gives neither it nor `layer_types`.
DEFAULT_GLOBAL_EVERY = 3
# transformers' truncation of new weights (in std) when `initializer_cutoff_factor` is null.
NO_CUTOFF_FACTOR = 3.0
_SIZE_KEYS = ("hidden_size", "num_attention_heads")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModernBertConfig(ModelConfig):
  """Hyper-parameters of a ModernBERT encoder and head (HF key names), beyond `ModelConfig`'s.

  Attributes:
    intermediate_size: width F of the gated feed-forward block (W_in maps E to 2F).
    hidden_activation: HF activation name of the feed-forward block.
    norm_eps: epsilon of every LayerNorm.
    norm_bias: whether the LayerNorms have a bias.
    attention_bias: whether W_qkv and W_o have biases.
    mlp_bias: whether W_in and W_out have biases.
    classifier_bias: whether the head's dense layer has a bias (its classifier always has).
    classifier_activation: HF activation name of the head.
    classifier_pooling: "cls" (first token) or "mean" (over the real tokens).
    embedding_dropout, attention_dropout, mlp_dropout, classifier_dropout: dropout rates.
    local_attention: the local window: a token sees keys within local_attention // 2.
    layer_types: per layer, "full_attention" (global) or "sliding_attention" (local).
    global_rope_theta, local_rope_theta: RoPE base θ of the global and local layers.
    initializer_cutoff_factor: truncation (in std) of the new head's initialiser.
    pad_token_id: id of the padding token.

  `load(hidden_dropout=...)` sets the embedding, MLP and classifier dropouts;
  `load(attention_dropout=...)` sets `attention_dropout`.
  """

  HIDDEN_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = (
    "embedding_dropout",
    "mlp_dropout",
    "classifier_dropout",
  )
  ATTENTION_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ("attention_dropout",)

  intermediate_size: int
  hidden_activation: str
  norm_eps: float
  norm_bias: bool
  attention_bias: bool
  mlp_bias: bool
  classifier_bias: bool
  classifier_activation: str
  classifier_pooling: str
  embedding_dropout: float
  attention_dropout: float
  mlp_dropout: float
  classifier_dropout: float
  local_attention: int
  layer_types: tuple[str, ...]
  global_rope_theta: float
  local_rope_theta: float
  initializer_cutoff_factor: float
  pad_token_id: int

  def __post_init__(self):
    super().__post_init__()
    for name in ("hidden_activation", "classifier_activation"):
      if getattr(self, name) not in layers.ACTIVATIONS:
        raise ValueError(
          f"{name} {getattr(self, name)!r} is not supported; supported: {tuple(layers.ACTIVATIONS)}"
        )
    if self.classifier_pooling not in POOLINGS:
      raise ValueError(
        f"classifier_pooling={self.classifier_pooling!r} is not supported; use one of {POOLINGS}"
      )
    for name in ("embedding_dropout", "attention_dropout", "mlp_dropout", "classifier_dropout"):
      check_rate(name, getattr(self, name))
    if len(self.layer_types) != self.num_hidden_layers or set(self.layer_types) - {GLOBAL, LOCAL}:
      raise ValueError(
        f"layer_types must list {GLOBAL!r} or {LOCAL!r} for each of the "
        f"{self.num_hidden_layers} layers (num_hidden_layers), got {list(self.layer_types)}"
      )
    if self.head_dim % 2:
      raise ValueError(
        f"rotary positions need an even head width; hidden_size / num_attention_heads = "
        f"{self.head_dim}"
      )
    if self.local_attention < 0:
      raise ValueError(f"local_attention must be >= 0, got {self.local_attention}")
    for name in ("global_rope_theta", "local_rope_theta"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

  @property
  def head_dropout(self) -> float:
    """Dropout rate of the classification head (`classifier_dropout`)."""
    return self.classifier_dropout

  @property
  def pools_first_token(self) -> bool:
    """The head reads the first token only with "cls" pooling."""
    return self.classifier_pooling == "cls"

  @property
  def window(self) -> int:
    """How far a local layer sees on each side: `local_attention // 2` (HF `sliding_window`)."""
    return self.local_attention // 2

  @property
  def global_layers(self) -> tuple[bool, ...]:
    """Per layer, whether it attends globally."""
    return tuple(kind == GLOBAL for kind in self.layer_types)

  @classmethod
  def supported_or_raise(cls, hf: dict[str, Any]) -> None:
    super().supported_or_raise(hf)
    rope = hf.get("rope_parameters")
    if rope is not None:
      if not isinstance(rope, dict) or set(rope) - {GLOBAL, LOCAL}:
        raise ValueError(
          f"rope_parameters={rope!r} is not supported; it must map {GLOBAL!r} and {LOCAL!r} "
          "to their RoPE settings"
        )
      for kind, params in rope.items():
        rope_type = (params or {}).get("rope_type", "default")
        if rope_type != "default":
          raise ValueError(
            f"rope_parameters[{kind!r}] has rope_type={rope_type!r}, which is not supported; "
            "only the default (unscaled) rotary positions are implemented"
          )
    refuse_unless(
      hf,
      "rope_scaling",
      (None,),
      default=None,
      fix="only unscaled rotary positions are implemented",
    )
    every = hf.get("global_attn_every_n_layers")
    if hf.get("layer_types") is None and every is not None and not _positive_int(every):
      raise ValueError(f"global_attn_every_n_layers must be an integer >= 1, got {every!r}")
    sizes = {key: hf.get(key) or MODERNBERT_DEFAULTS[key] for key in _SIZE_KEYS}
    head_dim = hf.get("head_dim")
    if head_dim is not None and head_dim != sizes["hidden_size"] // sizes["num_attention_heads"]:
      raise ValueError(
        f"head_dim={head_dim!r} is not supported; heads of width hidden_size / "
        "num_attention_heads are implemented"
      )

  @classmethod
  def canonical_hf(cls, hf: dict[str, Any]) -> dict[str, Any]:
    """Reads both spellings of the layer kinds and thetas.

    `layer_types` when given, else derived from `global_attn_every_n_layers` (default 3) as
    transformers does; the thetas from `rope_parameters[kind]["rope_theta"]` when given,
    else from `global_rope_theta` / `local_rope_theta`.
    """
    hf = dict(hf)
    if hf.get("layer_types") is None:
      num_layers = hf.get("num_hidden_layers") or MODERNBERT_DEFAULTS["num_hidden_layers"]
      every = hf.get("global_attn_every_n_layers") or DEFAULT_GLOBAL_EVERY
      hf["layer_types"] = [LOCAL if i % every else GLOBAL for i in range(num_layers)]
    hf["layer_types"] = tuple(hf["layer_types"])
    if "initializer_cutoff_factor" in hf and hf["initializer_cutoff_factor"] is None:
      hf["initializer_cutoff_factor"] = NO_CUTOFF_FACTOR
    rope = hf.get("rope_parameters") or {}
    for kind, key in ((GLOBAL, "global_rope_theta"), (LOCAL, "local_rope_theta")):
      theta = (rope.get(kind) or {}).get("rope_theta")
      if theta is not None:
        hf[key] = theta
    return hf


def _positive_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def truncated_normal_init(stddev: float, cutoff: float, axes: tuple[str, ...]):
  """N(0, stddev²) cut at ±cutoff·stddev, with logical axis names (HF `trunc_normal_`)."""
  init = nn.initializers.truncated_normal(stddev, lower=-cutoff, upper=cutoff)
  return nn.with_logical_partitioning(init, axes)


def rotary_table(length: int, head_dim: int, theta: float) -> np.ndarray:
  """`[2, length, head_dim]` float32: cos and sin of t·ω, ω_j = θ^(-2j/d), halves repeated."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  inverse_frequencies = np.float32(1.0) / np.power(np.float32(theta), exponents)
  angles = np.arange(length, dtype=np.float32)[:, None] * inverse_frequencies[None, :]
  angles = np.concatenate([angles, angles], axis=-1)
  return np.stack([np.cos(angles), np.sin(angles)]).astype(np.float32)


def rotate(x: jax.Array, table: jax.Array) -> jax.Array:
  """RoPE of `x` `[batch, n, heads, d]` with `table` `[2, n, d]` (cos, sin), in float32."""
  cos, sin = table[0][None, :, None, :], table[1][None, :, None, :]
  x32 = x.astype(jnp.float32)
  first, second = jnp.split(x32, 2, axis=-1)
  return (x32 * cos + jnp.concatenate([-second, first], axis=-1) * sin).astype(x.dtype)


class LayerContext(NamedTuple):
  """What every layer reads besides the carry.

  Attributes:
    padding: the real keys.
    window: bool `[1, 1, n, n]`, True where |t - s| <= the local window.
    rotary: float32 `[2, 2, n, d]`: the global then the local rotary table (`rotary_table`).
    global_layers: bool `[L]`, whether layer i attends globally.
  """

  padding: layers.KeyPadding
  window: jax.Array
  rotary: jax.Array
  global_layers: jax.Array


class Attention(nn.Module):
  """Self-attention with fused q/k/v, rotary positions and a global or local key set."""

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(
    self,
    x,
    context: LayerContext,
    is_global: jax.Array,
    deterministic: bool,
    first_token_only: bool = False,
  ):
    """`[batch, n, E]` -> `[batch, n, E]`, or `[batch, 1, E]` (first token) if
    `first_token_only`; `is_global` is a bool scalar (traced under `nn.scan`)."""
    cfg = self.config
    qkv = nn.DenseGeneral(
      (3, cfg.num_attention_heads, cfg.head_dim),
      use_bias=cfg.attention_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.normal_init(cfg.initializer_range, (sh.EMBED, sh.FUSED, sh.HEADS, sh.KV)),
      bias_init=layers.zeros_init((sh.FUSED, sh.HEADS, sh.KV)),
      name="qkv",
    )(x)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    table = jnp.where(is_global, context.rotary[0], context.rotary[1])
    allowed = jnp.logical_or(context.window, is_global)
    key = rotate(key, table)
    if first_token_only:
      query, table, allowed = query[:, :1], table[:, :1], allowed[:, :, :1]
    out = layers.attend(
      self,
      rotate(query, table),
      key,
      value,
      context.padding,
      mask=allowed,
      dropout_rate=cfg.attention_dropout,
      deterministic=deterministic,
      implementation=self.implementation,
      dtype=self.dtype,
    )
    out = nn.DenseGeneral(
      cfg.hidden_size,
      axis=(-2, -1),
      use_bias=cfg.attention_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.normal_init(cfg.initializer_range, (sh.HEADS, sh.KV, sh.EMBED)),
      bias_init=layers.zeros_init((sh.EMBED,)),
      name="output",
    )(out)
    return nn.Dropout(cfg.attention_dropout)(out, deterministic=deterministic)


class GatedMlp(nn.Module):
  """GeGLU feed-forward block: `[u, g] = x W_in`, `Dropout(act(u) ⊙ g) W_out`."""

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, deterministic: bool):
    cfg = self.config
    projected = nn.DenseGeneral(
      (2, cfg.intermediate_size),
      use_bias=cfg.mlp_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.normal_init(cfg.initializer_range, (sh.EMBED, sh.FUSED, sh.MLP)),
      bias_init=layers.zeros_init((sh.FUSED, sh.MLP)),
      name="input",
    )(x)
    gated = layers.activation(cfg.hidden_activation)(projected[..., 0, :]) * projected[..., 1, :]
    gated = nn.Dropout(cfg.mlp_dropout)(gated, deterministic=deterministic)
    return layers.dense(
      cfg.hidden_size,
      (sh.MLP, sh.EMBED),
      stddev=cfg.initializer_range,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      use_bias=cfg.mlp_bias,
      name="output",
    )(gated)


class TransformerLayer(nn.Module):
  """One pre-norm layer; the carry is `(hidden [batch, n, E], layer index)`."""

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(
    self, carry, context: LayerContext, deterministic: bool, first_token_only: bool = False
  ):
    """`(x, i)` -> `(x', i + 1)`; x' is `[batch, 1, E]` (first token) if `first_token_only`."""
    cfg = self.config
    x, index = carry
    norm = functools.partial(
      layers.layer_norm, cfg.norm_eps, self.dtype, self.param_dtype, use_bias=cfg.norm_bias
    )
    # Layer 0 has no attention norm in ModernBERT: its parameters exist (one tree for every
    # layer) but are not applied.
    normed = jnp.where(index == 0, x, norm(name="attention_norm")(x))
    attended = Attention(cfg, self.dtype, self.param_dtype, self.implementation, name="attention")(
      normed, context, context.global_layers[index], deterministic, first_token_only
    )
    if first_token_only:
      x, attended = layers.first_position(x), layers.first_position(attended)
    x = x + attended
    x = x + GatedMlp(cfg, self.dtype, self.param_dtype, name="mlp")(
      norm(name="mlp_norm")(x), deterministic
    )
    return (x[:, None] if first_token_only else x), index + 1


class Encoder(nn.Module):
  """Embeddings, `num_hidden_layers` layers (`stack.run_layers`) and the final norm.

  Returns `[batch, n, E]`, or `[batch, 1, E]` with `first_token_only` (the last layer then
  computes the first position only). `token_type_ids` is accepted and ignored.
  """

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention: str = "auto"
  remat: bool | str = False
  scan_layers: bool | int = False

  @nn.compact
  def __call__(
    self, input_ids, attention_mask, token_type_ids, deterministic: bool, first_token_only=False
  ):
    del token_type_ids  # ModernBERT has no token types.
    cfg = self.config
    norm = functools.partial(
      layers.layer_norm, cfg.norm_eps, self.dtype, self.param_dtype, use_bias=cfg.norm_bias
    )
    x = Embeddings(cfg, self.dtype, self.param_dtype, name="embeddings")(input_ids, deterministic)
    length = input_ids.shape[1]
    positions = np.arange(length)
    context = LayerContext(
      padding=layers.KeyPadding.from_attention_mask(attention_mask),
      window=jnp.asarray(np.abs(positions[:, None] - positions[None, :]) <= cfg.window)[None, None],
      rotary=jnp.asarray(
        np.stack(
          [
            rotary_table(length, cfg.head_dim, cfg.global_rope_theta),
            rotary_table(length, cfg.head_dim, cfg.local_rope_theta),
          ]
        )
      ),
      global_layers=jnp.asarray(cfg.global_layers),
    )
    implementation = layers.resolve_attention(self.attention, self.dtype, cfg.head_dim)
    x, _ = stack.run_layers(
      TransformerLayer,
      (cfg, self.dtype, self.param_dtype, implementation),
      (x, jnp.zeros((), jnp.int32)),
      context,
      num_layers=cfg.num_hidden_layers,
      deterministic=deterministic,
      first_token_only=first_token_only,
      remat=self.remat,
      scan_layers=self.scan_layers,
      initializing=self.is_initializing(),
    )
    return norm(name="final_norm")(x)


class Embeddings(nn.Module):
  """Word embeddings, LayerNorm, dropout (no positions, no token types)."""

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids, deterministic: bool):
    cfg = self.config
    x = layers.embed(
      cfg.vocab_size,
      cfg.hidden_size,
      (sh.VOCAB, sh.EMBED),
      stddev=cfg.initializer_range,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="word_embeddings",
    )(input_ids)
    x = layers.layer_norm(
      cfg.norm_eps, self.dtype, self.param_dtype, "layer_norm", use_bias=cfg.norm_bias
    )(x)
    return nn.Dropout(cfg.embedding_dropout)(x, deterministic=deterministic)


class Head(nn.Module):
  """HF's prediction head on the pooled tokens (dense, act, LayerNorm), dropout, classifier."""

  config: ModernBertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array, attention_mask=None, deterministic: bool = True):
    cfg = self.config
    if cfg.classifier_pooling == "cls":
      pooled = hidden[:, 0]
    else:
      if attention_mask is None:
        attention_mask = jnp.ones(hidden.shape[:2], jnp.int32)
      keep = attention_mask.astype(jnp.float32)[..., None]
      total = jnp.sum(hidden.astype(jnp.float32) * keep, axis=1)
      pooled = (total / jnp.sum(keep, axis=1)).astype(hidden.dtype)
    cutoff = cfg.initializer_cutoff_factor

    def dense(features, axes, stddev, use_bias, name):
      return nn.Dense(
        features,
        use_bias=use_bias,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=truncated_normal_init(stddev, cutoff, axes),
        bias_init=layers.zeros_init(axes[1:]),
        name=name,
      )

    out_std = cfg.initializer_range / math.sqrt(2.0 * cfg.num_hidden_layers)
    x = dense(cfg.hidden_size, (sh.EMBED, sh.POOLED), out_std, cfg.classifier_bias, "dense")(pooled)
    x = layers.activation(cfg.classifier_activation)(x)
    x = layers.layer_norm(
      cfg.norm_eps, self.dtype, self.param_dtype, "layer_norm", sh.POOLED, cfg.norm_bias
    )(x)
    x = nn.Dropout(cfg.classifier_dropout)(x, deterministic=deterministic)
    classifier_std = cfg.hidden_size**-0.5
    return dense(cfg.num_labels, (sh.EMBED, sh.CLASSES), classifier_std, True, "classifier")(x)


def tensor_specs(config: ModernBertConfig) -> list[convert.TensorSpec]:
  """Every tensor of `ModernBertForSequenceClassification` and its leaf in our tree."""
  norm = functools.partial(convert.norm, bias=config.norm_bias)
  specs = [
    *convert.embedding("embeddings.tok_embeddings", ("encoder", "embeddings", "word_embeddings")),
    *norm("embeddings.norm", ("encoder", "embeddings", "layer_norm")),
  ]
  for i in range(config.num_hidden_layers):
    hf, ours = f"layers.{i}", ("encoder", f"{convert.LAYER_KEY_PREFIX}{i}")
    if i == 0:
      specs.append(convert.unstored((*ours, "attention_norm", "scale"), 1.0))
      if config.norm_bias:
        specs.append(convert.unstored((*ours, "attention_norm", "bias"), 0.0))
    else:
      specs += norm(f"{hf}.attn_norm", (*ours, "attention_norm"))
    attention = functools.partial(convert.linear, bias=config.attention_bias)
    mlp = functools.partial(convert.linear, bias=config.mlp_bias)
    specs += attention(f"{hf}.attn.Wqkv", (*ours, "attention", "qkv"))
    specs += attention(f"{hf}.attn.Wo", (*ours, "attention", "output"), 2)
    specs += norm(f"{hf}.mlp_norm", (*ours, "mlp_norm"))
    specs += mlp(f"{hf}.mlp.Wi", (*ours, "mlp", "input"))
    specs += mlp(f"{hf}.mlp.Wo", (*ours, "mlp", "output"))
  specs += norm("final_norm", ("encoder", "final_norm"))
  head = {"prefixed": False, "in_head": True}
  specs += convert.linear("head.dense", ("head", "dense"), bias=config.classifier_bias, **head)
  specs += norm("head.norm", ("head", "layer_norm"), **head)
  specs += convert.linear("classifier", ("head", "classifier"), per_label=True, **head)
  return specs


def tiny_config(**overrides) -> dict[str, Any]:
  """A small config.json dict (2 layers, width 32, 4 heads, a window of ±2 tokens), written
  the way the hub checkpoints are (`global_attn_every_n_layers`, `*_rope_theta`)."""
  hf = {
    "model_type": "modernbert",
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 24,
    "hidden_activation": "gelu",
    "max_position_embeddings": 64,
    "initializer_range": 0.02,
    "norm_eps": 1e-5,
    "norm_bias": False,
    "attention_bias": False,
    "mlp_bias": False,
    "classifier_bias": False,
    "classifier_activation": "gelu",
    "classifier_pooling": "mean",
    "embedding_dropout": 0.1,
    "attention_dropout": 0.1,
    "mlp_dropout": 0.1,
    "classifier_dropout": 0.1,
    "global_attn_every_n_layers": 2,
    "local_attention": 4,
    "global_rope_theta": 160000.0,
    "local_rope_theta": 10000.0,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "cls_token_id": 0,
    "sep_token_id": 2,
  }
  hf.update(overrides)
  return hf


# Defaults of transformers' ModernBertConfig for keys a config.json may omit. `layer_types` is
# always filled by `canonical_hf`.
MODERNBERT_DEFAULTS: dict[str, Any] = {
  "vocab_size": 50368,
  "hidden_size": 768,
  "num_hidden_layers": 22,
  "num_attention_heads": 12,
  "initializer_range": 0.02,
  "intermediate_size": 1152,
  "hidden_activation": "gelu",
  "norm_eps": 1e-5,
  "norm_bias": False,
  "attention_bias": False,
  "mlp_bias": False,
  "classifier_bias": False,
  "classifier_activation": "gelu",
  "classifier_pooling": "cls",
  "embedding_dropout": 0.0,
  "attention_dropout": 0.0,
  "mlp_dropout": 0.0,
  "classifier_dropout": 0.0,
  "local_attention": 128,
  "layer_types": None,
  "global_rope_theta": 160000.0,
  "local_rope_theta": 10000.0,
  "initializer_cutoff_factor": 2.0,
  "pad_token_id": 50283,
}

MODERNBERT = registry.Family(
  model_type="modernbert",
  config_class=ModernBertConfig,
  defaults=MODERNBERT_DEFAULTS,
  encoder=Encoder,
  head=Head,
  tensor_specs=tensor_specs,
  hf_prefix="model",
  architecture="ModernBertForSequenceClassification",
  tiny_config=tiny_config,
  tiny_tokenizer="byte_level_bpe",
)

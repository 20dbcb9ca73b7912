"""The DeBERTa-v2 family (config.json `model_type` "deberta-v2"), used by DeBERTa-v3 checkpoints.

A post-LayerNorm encoder like BERT's (`bert.TransformerLayer`) whose attention adds
relative-position terms to the content term ("disentangled attention"). Per head, with
content queries/keys Q, K from the hidden states h and position queries/keys Qʳ, Kʳ from the
shared relative-position embeddings R (one table for all layers):

  a_qk = (Q_q·K_k  +  Q_q·Kʳ_{δ(q,k)} [c2p]  +  K_k·Qʳ_{δ(q,k)} [p2c]) / √(d · s)
  s    = 1 + (number of the terms "c2p", "p2c" in `pos_att_type`)
  δ(q,k) = clip(bucket(q - k) + S, 0, 2S - 1)          (a row of R, S = attention span)
  bucket(r) = r                                          if |r| <= m = position_buckets / 2
            = sign(r) · (m + ⌈log(|r| / m) / log((P - 1) / m) · (m - 1)⌉)   otherwise

with P = `max_relative_positions` (or `max_position_embeddings` when < 1) and S =
`position_buckets` (or P without buckets). R is `rel_embeddings` `[2S, E]`, LayerNorm-ed when
`norm_rel_ebd` has "layer_norm"; Qʳ = R W_q + b_q and Kʳ = R W_k + b_k with the content
projections when `share_att_key`, else with their own (`pos_query`, `pos_key`). Dropout
(`hidden_dropout_prob`) is applied to R in every layer, as transformers does.

Masking: the attention mask of a batch row is the outer product m_q · m_k of its token mask.
Masked logits are set to the lowest float32 and a softmax follows, so a real query ignores
padding keys and a padding query (a fully masked row) attends uniformly to all keys, as in
transformers 5: hidden states match at padding positions too. The embeddings' output is
multiplied by the token mask (padding positions are zero before the first layer).

  e   = word[x] (+ pos[t] if `position_biased_input`) (+ type[s] if `type_vocab_size` > 0)
  h_0 = Dropout(LayerNorm(e W_proj) · m)      (W_proj, no bias, if `embedding_size` != E)
  logits = Dropout(act(Dropout(h_L[0]) W_p + b_p)) W_c + b_c     (`ContextPoolerHead`)

with `act` = `pooler_hidden_act`, the first dropout `pooler_dropout` and the second
`cls_dropout` (or `hidden_dropout_prob`).

The relative index δ depends only on the sequence length: it is computed with numpy at trace
time (float32, as transformers' `make_log_bucket_position`), and only the rows of R that the
length reaches are projected. DeBERTa's attention is computed here with einsums and an
explicit float32 softmax: the fused kernels of `layers.attend` (cuDNN flash attention) take no
gathered relative-position terms, so every `attention` choice runs this path ("cudnn" with a
warning). The convolution after the first layer (`conv_kernel_size`, DeBERTa-v2 xlarge/xxlarge)
is not implemented and refused; DeBERTa-v3 does not use it.

Parameter tree (logical axis names in brackets; E width, N heads, d = E/N, F intermediate,
V vocabulary, D embedding size, P positions, T token types, S span):

  embeddings/word_embeddings/embedding                [V, D] (vocab, embed)
  embeddings/{position,token_type}_embeddings/...     [P|T, D] (positions|token_types, embed)
  embeddings/embed_proj/kernel                        [D, E] (embed_in, embed), if D != E
  embeddings/layer_norm/{scale,bias}                  [E]
  rel_embeddings/embedding                            [2S, E] (positions, embed)
  rel_embeddings_norm/{scale,bias}                    [E]
  layer_{i}/attention/{query,key,value}/{kernel,bias} [E, N, d] (embed, heads, kv), [N, d]
  layer_{i}/attention/{pos_query,pos_key}/...         as query, without `share_att_key`
  layer_{i}/attention/output/kernel                   [N, d, E] (heads, kv, embed)
  layer_{i}/{attention_norm,output_norm}, intermediate, output   as in `bert.py`

With `scan_layers` the `layer_{i}` subtrees are one subtree `layers` (leaves `[L, ...]`); R
lives outside the layers and reaches the scanned body as a broadcast input (`stack.py`).

References:
  He et al., "DeBERTa: Decoding-enhanced BERT with Disentangled Attention", ICLR 2021;
  He et al., "DeBERTaV3", ICLR 2023; transformers' `modeling_deberta_v2.py` and
  `DebertaV2Config` (the numerics, names and defaults we match).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from typing import Any, ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pats_jax.models import bert, convert, heads, layers, registry, stack
from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig, check_rate, refuse_unless

Dtype = Any
CUDNN_IGNORED = (
  "attention='cudnn' does not apply to model_type 'deberta-v2': its disentangled attention "
  "adds relative-position terms that cuDNN flash attention does not take, so it runs as XLA "
  "einsums (as with attention='xla')"
)
POSITION_TERMS = ("c2p", "p2c")
REL_EMBEDDING_NORMS = ("none", "layer_norm")


def _split_types(value: Any) -> tuple[str, ...]:
  """config.json's "p2c|c2p" or ["p2c", "c2p"] -> ("p2c", "c2p") (lower case, stripped)."""
  if value is None:
    return ()
  parts = value.split("|") if isinstance(value, str) else list(value)
  return tuple(str(part).strip().lower() for part in parts if str(part).strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class DebertaV2Config(ModelConfig):
  """Hyper-parameters of a DeBERTa-v2 encoder (HF key names), beyond `ModelConfig`'s.

  Attributes:
    intermediate_size: width F of the feed-forward layer.
    hidden_act: HF activation name of the feed-forward layer (one of `layers.ACTIVATIONS`).
    hidden_dropout_prob: dropout after embeddings, attention output, MLP output and on the
      relative-position embeddings.
    attention_probs_dropout_prob: dropout on the attention probabilities.
    max_position_embeddings: rows of the absolute position table; P when
      `max_relative_positions` < 1.
    type_vocab_size: rows of the token-type table; 0 means no token types.
    layer_norm_eps: epsilon of every LayerNorm.
    pad_token_id: id of the padding token.
    relative_attention: whether attention has the relative-position terms.
    max_relative_positions: P, the largest relative distance (< 1: `max_position_embeddings`).
    position_buckets: S, the number of log buckets per direction (<= 0: no bucketing).
    position_biased_input: whether absolute position embeddings are added to the input.
    pos_att_type: the relative terms, a subset of ("c2p", "p2c") (config.json: "p2c|c2p").
    share_att_key: project R with the content query/key projections.
    norm_rel_ebd: "layer_norm" normalises R; "none" does not.
    embedding_size: width D of the embeddings; None means E (no projection).
    pooler_hidden_act: activation of the pooler.
    pooler_dropout: dropout on the first token before the pooler.
    cls_dropout: dropout before the classifier; None means `hidden_dropout_prob`.
  """

  HIDDEN_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ("hidden_dropout_prob",)
  ATTENTION_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ("attention_probs_dropout_prob",)

  intermediate_size: int
  hidden_act: str
  hidden_dropout_prob: float
  attention_probs_dropout_prob: float
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float
  pad_token_id: int
  relative_attention: bool
  max_relative_positions: int
  position_buckets: int
  position_biased_input: bool
  pos_att_type: tuple[str, ...]
  share_att_key: bool
  norm_rel_ebd: str
  embedding_size: int | None
  pooler_hidden_act: str
  pooler_dropout: float
  cls_dropout: float | None

  def __post_init__(self):
    object.__setattr__(self, "pos_att_type", _split_types(self.pos_att_type))
    object.__setattr__(self, "norm_rel_ebd", "|".join(_split_types(self.norm_rel_ebd)) or "none")
    super().__post_init__()
    for name in ("hidden_act", "pooler_hidden_act"):
      if getattr(self, name) not in layers.ACTIVATIONS:
        raise ValueError(
          f"{name} {getattr(self, name)!r} is not supported; supported: {tuple(layers.ACTIVATIONS)}"
        )
    unknown = sorted(set(self.pos_att_type) - set(POSITION_TERMS))
    if unknown:
      raise ValueError(
        f"pos_att_type {'|'.join(self.pos_att_type)!r} has {unknown}; the terms are "
        f"{POSITION_TERMS}"
      )
    norms = set(self.norm_rel_ebd.split("|"))
    if not norms <= set(REL_EMBEDDING_NORMS):
      raise ValueError(
        f"norm_rel_ebd {self.norm_rel_ebd!r} is not supported; use 'layer_norm' or 'none'"
      )
    if self.relative_attention_norm and not self.relative_attention:
      raise ValueError(
        "norm_rel_ebd='layer_norm' with relative_attention=false normalises embeddings that "
        "do not exist; set norm_rel_ebd to 'none' or relative_attention to true"
      )
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "pooler_dropout"):
      check_rate(name, getattr(self, name))
    check_rate("cls_dropout", self.cls_dropout)
    if self.type_vocab_size < 0:
      raise ValueError(f"type_vocab_size must be >= 0, got {self.type_vocab_size}")
    if self.position_buckets == 1:
      raise ValueError("position_buckets=1 leaves no bucket per direction; use <= 0 (none) or >= 2")

  @property
  def head_dropout(self) -> float:
    """Dropout rate before the classifier (HF: cls_dropout, else hidden_dropout_prob)."""
    return self.hidden_dropout_prob if self.cls_dropout is None else self.cls_dropout

  @property
  def embedding_width(self) -> int:
    """D, the width of the embedding tables."""
    return self.embedding_size or self.hidden_size

  @property
  def relative_positions(self) -> int:
    """P, the largest relative distance (`max_relative_positions`, else the absolute ones)."""
    if self.max_relative_positions < 1:
      return self.max_position_embeddings
    return self.max_relative_positions

  @property
  def attention_span(self) -> int:
    """S: R has 2S rows (`position_buckets` when > 0, else P)."""
    return self.position_buckets if self.position_buckets > 0 else self.relative_positions

  @property
  def attention_scale(self) -> float:
    """The logit divisor √(d · s), s = 1 + the number of relative terms in `pos_att_type`."""
    terms = sum(term in self.pos_att_type for term in POSITION_TERMS)
    return math.sqrt(self.head_dim * (1 + terms))

  @property
  def relative_attention_norm(self) -> bool:
    """Whether R is LayerNorm-ed (`norm_rel_ebd` has "layer_norm")."""
    return "layer_norm" in self.norm_rel_ebd.split("|")

  @classmethod
  def supported_or_raise(cls, hf: dict[str, Any]) -> None:
    super().supported_or_raise(hf)
    refuse_unless(
      hf,
      "conv_kernel_size",
      (0, None),
      default=0,
      fix="the convolution after the first layer (DeBERTa-v2 xlarge/xxlarge) is not "
      "implemented; DeBERTa-v3 checkpoints do not use it",
    )
    width = hf.get("hidden_size") or DEBERTA_V2_DEFAULTS["hidden_size"]
    heads = hf.get("num_attention_heads") or DEBERTA_V2_DEFAULTS["num_attention_heads"]
    refuse_unless(
      hf,
      "pooler_hidden_size",
      (None, width),
      default=None,
      fix=f"the pooler keeps the width hidden_size={width}",
    )
    refuse_unless(
      hf,
      "attention_head_size",
      (None, width // heads),
      default=None,
      fix=f"a head's width is hidden_size / num_attention_heads = {width // heads}",
    )

  def to_hf_dict(self) -> dict[str, Any]:
    hf = super().to_hf_dict()
    if hf.get("embedding_size") is None:  # transformers reads a missing key as hidden_size.
      hf.pop("embedding_size", None)
    hf["pos_att_type"] = list(self.pos_att_type)
    return hf


class Embeddings(nn.Module):
  """Word (+ absolute position) (+ token type) embeddings, projection, LayerNorm, mask, dropout."""

  config: DebertaV2Config
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, input_ids, token_type_ids, token_mask, deterministic: bool):
    cfg = self.config

    def embed(num: int, axes: tuple[str, str], name: str) -> layers.GatheredEmbed:
      return layers.embed(
        num,
        cfg.embedding_width,
        axes,
        stddev=cfg.initializer_range,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )

    x = embed(cfg.vocab_size, (sh.VOCAB, sh.EMBED), "word_embeddings")(input_ids)
    if cfg.position_biased_input:
      positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)
      x = x + embed(cfg.max_position_embeddings, (sh.POSITIONS, sh.EMBED), "position_embeddings")(
        positions
      )
    if cfg.type_vocab_size > 0:
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
      x = x + embed(cfg.type_vocab_size, (sh.TOKEN_TYPES, sh.EMBED), "token_type_embeddings")(
        token_type_ids
      )
    if cfg.embedding_width != cfg.hidden_size:
      x = layers.dense(
        cfg.hidden_size,
        (sh.EMBED_IN, sh.EMBED),
        stddev=cfg.initializer_range,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        use_bias=False,
        name="embed_proj",
      )(x)
    x = layers.layer_norm(cfg.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm")(x)
    x = x * token_mask[..., None].astype(x.dtype)
    return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


def log_bucket_positions(relative: np.ndarray, buckets: int, max_position: int) -> np.ndarray:
  """transformers' `make_log_bucket_position` in numpy float32: distances beyond
  m = buckets // 2 share log-spaced buckets up to `max_position` (see the module docstring)."""
  mid = buckets // 2
  near = (relative < mid) & (relative > -mid)
  distance = np.where(near, mid - 1, np.abs(relative)).astype(np.float32)
  with np.errstate(divide="ignore", invalid="ignore"):  # log(0) where mid = 1: not selected.
    ratio = np.log(distance / np.float32(mid)) / np.log(np.float32((max_position - 1) / mid))
    log_position = np.ceil(ratio * np.float32(mid - 1)) + np.float32(mid)
  bucketed = np.where(
    distance <= mid, relative.astype(np.float32), log_position * np.sign(relative)
  )
  return bucketed.astype(np.int64)


def relative_index(config: DebertaV2Config, length: int) -> tuple[np.ndarray, int, int]:
  """The rows of R each query-key pair reads, for a sequence of `length` tokens.

  Returns:
    `(index, first, stop)`: `index[q, k]` = δ(q, k) - first, int32 `[length, length]`, where
    rows `first .. stop - 1` of R are the ones any pair reads (a contiguous range, as δ is
    monotone in q - k).
  """
  positions = np.arange(length)
  relative = positions[:, None] - positions[None, :]
  if config.position_buckets > 0 and config.relative_positions > 0:
    relative = log_bucket_positions(relative, config.position_buckets, config.relative_positions)
  span = config.attention_span
  rows = np.clip(relative + span, 0, 2 * span - 1)
  first, stop = int(rows.min()), int(rows.max()) + 1
  return (rows - first).astype(np.int32), first, stop


class DisentangledContext(NamedTuple):
  """What every DeBERTa layer reads besides its input (a broadcast input under `nn.scan`).

  Attributes:
    token_mask: bool `[batch, L]`, True at real tokens.
    rel_embeddings: `[R, E]`, the (normalised) rows of R the length reaches; None without
      relative attention.
    rel_index: int32 `[L, L]`, the row of `rel_embeddings` each query-key pair reads; None
      without relative attention.
  """

  token_mask: jax.Array
  rel_embeddings: jax.Array | None
  rel_index: jax.Array | None


class DisentangledSelfAttention(nn.Module):
  """DeBERTa's attention: content, c2p and p2c terms, pairwise mask, explicit softmax."""

  config: DebertaV2Config
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(
    self, x, context: DisentangledContext, deterministic: bool, first_token_only: bool = False
  ):
    """`[batch, L, E]` -> `[batch, L, E]` (`[batch, 1, E]` with `first_token_only`)."""
    cfg = self.config

    def projection(name: str) -> tuple[jax.Array, jax.Array]:
      return layers.HeadProjection(
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.head_dim,
        cfg.initializer_range,
        self.param_dtype,
        name=name,
      )()

    def project(inputs: jax.Array, params: tuple[jax.Array, jax.Array]) -> jax.Array:
      return layers.project_heads(inputs, [params], self.dtype)[0]

    query_params, key_params = projection("query"), projection("key")
    query, key, value = layers.project_heads(  # [b, L, N, d] each, one matmul
      x, [query_params, key_params, projection("value")], self.dtype
    )
    if first_token_only:
      query = query[:, :1]
    f32 = functools.partial(jnp.einsum, preferred_element_type=jnp.float32)
    logits = f32("bqhd,bkhd->bhqk", query, key)
    if cfg.relative_attention:
      rel = nn.Dropout(cfg.hidden_dropout_prob)(context.rel_embeddings, deterministic)
      index = context.rel_index[:1] if first_token_only else context.rel_index  # [q, k]
      if "c2p" in cfg.pos_att_type:
        pos_key = project(rel, key_params if cfg.share_att_key else projection("pos_key"))
        by_row = f32("bqhd,rhd->bhqr", query, pos_key)
        logits += jnp.take_along_axis(by_row, index[None, None], axis=-1)
      if "p2c" in cfg.pos_att_type:
        pos_query = project(rel, query_params if cfg.share_att_key else projection("pos_query"))
        by_row = f32("bkhd,rhd->bhkr", key, pos_query)
        logits += jnp.swapaxes(jnp.take_along_axis(by_row, index.T[None, None], axis=-1), -1, -2)
    mask = context.token_mask[:, None, None, :]
    query_mask = context.token_mask[:, :1] if first_token_only else context.token_mask
    mask = mask & query_mask[:, None, :, None]
    logits = jnp.where(mask, logits / cfg.attention_scale, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1)
    probs = nn.Dropout(cfg.attention_probs_dropout_prob)(probs, deterministic)
    out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), value)
    return nn.DenseGeneral(
      cfg.hidden_size,
      axis=(-2, -1),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.normal_init(cfg.initializer_range, (sh.HEADS, sh.KV, sh.EMBED)),
      bias_init=layers.zeros_init((sh.EMBED,)),
      name="output",
    )(out)


class TransformerLayer(bert.TransformerLayer):
  """BERT's post-LayerNorm layer with DeBERTa's disentangled attention."""

  def attend(
    self, x, context: DisentangledContext, deterministic: bool, first_token_only: bool
  ) -> jax.Array:
    return DisentangledSelfAttention(self.config, self.dtype, self.param_dtype, name="attention")(
      x, context, deterministic, first_token_only
    )


class Encoder(nn.Module):
  """Embeddings, the relative-position table R and the layers; returns `[b, L, E]`.

  With `first_token_only=True` the last layer computes the first position only: `[b, 1, E]`.
  Every `attention` choice runs the einsum attention; "cudnn" warns that it does not apply.
  """

  config: DebertaV2Config
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention: str = "auto"
  remat: bool | str = False
  scan_layers: bool | int = False

  @nn.compact
  def __call__(
    self, input_ids, attention_mask, token_type_ids, deterministic: bool, first_token_only=False
  ):
    cfg = self.config
    if self.attention == "cudnn":
      warnings.warn(CUDNN_IGNORED, stacklevel=2)
    length = input_ids.shape[1]
    if cfg.position_biased_input and length > cfg.max_position_embeddings:
      raise ValueError(
        f"sequence length {length} exceeds the model's {cfg.max_position_embeddings} "
        "positions; truncate inputs (max_length) to at most that"
      )
    token_mask = attention_mask.astype(jnp.bool_)
    x = Embeddings(cfg, self.dtype, self.param_dtype, name="embeddings")(
      input_ids, token_type_ids, token_mask, deterministic
    )
    rel_embeddings = rel_index = None
    if cfg.relative_attention:
      index, first, stop = relative_index(cfg, length)
      rel_embeddings = nn.Embed(
        2 * cfg.attention_span,
        cfg.hidden_size,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        embedding_init=layers.normal_init(cfg.initializer_range, (sh.POSITIONS, sh.EMBED)),
        name="rel_embeddings",
      )(jnp.arange(first, stop, dtype=jnp.int32))
      # Whole on every device: these rows are data to every layer's projections, not a weight
      # they multiply on its split axis.
      rel_embeddings = sh.gathered(rel_embeddings)
      if cfg.relative_attention_norm:
        rel_embeddings = layers.layer_norm(
          cfg.layer_norm_eps, self.dtype, self.param_dtype, "rel_embeddings_norm"
        )(rel_embeddings)
      rel_index = jnp.asarray(index)
    return stack.run_layers(
      TransformerLayer,
      (cfg, self.dtype, self.param_dtype),
      x,
      DisentangledContext(token_mask, rel_embeddings, rel_index),
      num_layers=cfg.num_hidden_layers,
      deterministic=deterministic,
      first_token_only=first_token_only,
      remat=self.remat,
      scan_layers=self.scan_layers,
      initializing=self.is_initializing(),
    )


class ContextPoolerHead(heads.PoolerHead):
  """DeBERTa's head: dropout (`pooler_dropout`), dense + `pooler_hidden_act` on the first token
  (the context pooler), dropout, linear classifier."""

  config: DebertaV2Config

  def pooler_activation(self) -> str:
    return self.config.pooler_hidden_act

  def pooler_input_dropout(self) -> float:
    return self.config.pooler_dropout


def tensor_specs(config: DebertaV2Config) -> list[convert.TensorSpec]:
  """Every tensor of `DebertaV2ForSequenceClassification` and its leaf in our tree."""
  emb, enc = ("encoder", "embeddings"), ("encoder",)
  specs = convert.embedding("embeddings.word_embeddings", (*emb, "word_embeddings"))
  if config.position_biased_input:
    specs += convert.embedding("embeddings.position_embeddings", (*emb, "position_embeddings"))
  if config.type_vocab_size > 0:
    specs += convert.embedding("embeddings.token_type_embeddings", (*emb, "token_type_embeddings"))
  if config.embedding_width != config.hidden_size:
    specs += convert.linear("embeddings.embed_proj", (*emb, "embed_proj"), bias=False)
  specs += convert.norm("embeddings.LayerNorm", (*emb, "layer_norm"))
  if config.relative_attention:
    specs += convert.embedding("encoder.rel_embeddings", (*enc, "rel_embeddings"))
  if config.relative_attention_norm:
    specs += convert.norm("encoder.LayerNorm", (*enc, "rel_embeddings_norm"))
  own_projections = []
  if config.relative_attention and not config.share_att_key:
    own_projections = [
      (f"pos_{kind}_proj", f"pos_{kind}")
      for kind, term in (("key", "c2p"), ("query", "p2c"))
      if term in config.pos_att_type
    ]
  projections = [(f"{name}_proj", name) for name in ("query", "key", "value")] + own_projections
  specs += bert.layer_specs(config, projections)
  return specs + heads.pooler_head_specs(prefixed_pooler=False)


def tiny_config(**overrides) -> dict[str, Any]:
  """A small DeBERTa-v3-style config.json dict (2 layers, width 32, 4 heads, 4 + 4 buckets)."""
  hf = {
    "model_type": "deberta-v2",
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64,
    "type_vocab_size": 0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-7,
    "relative_attention": True,
    "max_relative_positions": -1,
    "position_buckets": 8,
    "position_biased_input": False,
    "pos_att_type": "p2c|c2p",
    "share_att_key": True,
    "norm_rel_ebd": "layer_norm",
    "pad_token_id": 0,
  }
  hf.update(overrides)
  return hf


# Defaults of transformers' DebertaV2Config (and of the modeling code's `getattr`s) for keys a
# config.json may omit.
DEBERTA_V2_DEFAULTS: dict[str, Any] = {
  "vocab_size": 128100,
  "hidden_size": 1536,
  "num_hidden_layers": 24,
  "num_attention_heads": 24,
  "intermediate_size": 6144,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "max_position_embeddings": 512,
  "type_vocab_size": 0,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-7,
  "pad_token_id": 0,
  "relative_attention": False,
  "max_relative_positions": -1,
  "position_buckets": -1,
  "position_biased_input": True,
  "pos_att_type": (),
  "share_att_key": False,
  "norm_rel_ebd": "none",
  "embedding_size": None,
  "pooler_hidden_act": "gelu",
  "pooler_dropout": 0.0,
  "cls_dropout": None,
}

DEBERTA_V2 = registry.Family(
  model_type="deberta-v2",
  config_class=DebertaV2Config,
  defaults=DEBERTA_V2_DEFAULTS,
  encoder=Encoder,
  head=ContextPoolerHead,
  tensor_specs=tensor_specs,
  hf_prefix="deberta",
  architecture="DebertaV2ForSequenceClassification",
  tiny_config=tiny_config,
  tiny_tokenizer="unigram",
)

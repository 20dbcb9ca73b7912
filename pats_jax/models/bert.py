"""The BERT family: BERT and RoBERTa (config.json `model_type` "bert", "roberta").

One post-LayerNorm transformer encoder serves both model types; they differ in position ids,
token types and head:

  BERT:     positions p_t = t;  token types s_t from the input;  pooler head
  RoBERTa:  positions p_t = pad + cumsum(mask)_t · mask_t  (pad = padding index);
            token types 0;  two-layer head (`heads.TwoLayerHead`, tanh)

  h_0 = LayerNorm(word[x] + type[s] + pos[p])
  for each layer:  a = LayerNorm(h + Dropout(Attn(h) W_o))
                   h = LayerNorm(a + Dropout(act(a W_1) W_2))
  Attn(h) = softmax(Q Kᵀ / √d + mask) V, per head, padding keys masked out.

This module holds the family's config (`BertConfig`), layers (`Embeddings`, `SelfAttention`,
`TransformerLayer`, `Encoder`), checkpoint tensor names (`tensor_specs`), tiny configs and
`Family` records; ELECTRA (`electra.py`) reuses the body, DeBERTa (`deberta.py`) the layer with
its own attention (`TransformerLayer.attend`). The shared machinery lives in `layers.py`
(attention kernels, LayerNorm, dense), `stack.py` (per-layer or `nn.scan`ned layers, remat,
first-token-only last layer) and `heads.py`.

Parameter tree of the encoder (logical axis names in brackets; E width, N heads, d = E/N,
F intermediate, V vocabulary, P positions, T token types):

  embeddings/{word,position,token_type}_embeddings/embedding  [V|P|T, E] (vocab|positions|
                                                               token_types, embed)
  embeddings/layer_norm/{scale,bias}                          [E] (embed)
  layer_{i}/attention/{query,key,value}/kernel                [E, N, d] (embed, heads, kv)
  layer_{i}/attention/output/kernel                           [N, d, E] (heads, kv, embed)
  layer_{i}/{attention_norm,output_norm}/{scale,bias}         [E]
  layer_{i}/intermediate/kernel, layer_{i}/output/kernel      [E, F] (embed, mlp), [F, E]

With `scan_layers` the `layer_{i}` subtrees are one subtree `layers` with leaves `[L, ...]`.

Knobs: `dtype` (compute, e.g. bfloat16) and `param_dtype` (storage, e.g. float32);
`attention` ("auto", "xla", "cudnn") picks `jax.nn.dot_product_attention`'s backend; `remat`
and `scan_layers` as in `stack.py`. Dropout uses the rng stream "dropout". Attention-probability
dropout is not available in the fused kernels, so while training with
`attention_probs_dropout_prob > 0` attention runs through Flax's explicit softmax (XLA); set
it to 0 to use cuDNN flash attention in training.

References:
  Devlin et al., "BERT", NAACL 2019; Liu et al., "RoBERTa", arXiv 1907.11692;
  transformers' `modeling_bert.py` / `modeling_roberta.py` and `BertConfig` /
  `RobertaConfig` (the numerics, names and defaults we match).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import classifier, convert, heads, layers, registry, stack
from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig, check_rate, refuse_unless

Dtype = Any

# The classifier of every family; kept here under its old name.
SequenceClassifier = classifier.SequenceClassifier


@dataclasses.dataclass(frozen=True, kw_only=True)
class BertConfig(ModelConfig):
  """Hyper-parameters of a BERT or RoBERTa encoder (HF key names), beyond `ModelConfig`'s.

  Attributes:
    intermediate_size: width F of the feed-forward layer.
    hidden_act: HF activation name (one of `layers.ACTIVATIONS`).
    hidden_dropout_prob: dropout after embeddings, attention output and MLP output.
    attention_probs_dropout_prob: dropout on the attention probabilities.
    classifier_dropout: dropout in the head; None means `hidden_dropout_prob`.
    max_position_embeddings: rows of the position-embedding table.
    type_vocab_size: rows of the token-type table (2 for BERT, 1 for RoBERTa).
    layer_norm_eps: epsilon of every LayerNorm.
    pad_token_id: id of the padding token (RoBERTa's position offset).
  """

  HIDDEN_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ("hidden_dropout_prob",)
  ATTENTION_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ("attention_probs_dropout_prob",)

  intermediate_size: int
  hidden_act: str
  hidden_dropout_prob: float
  attention_probs_dropout_prob: float
  classifier_dropout: float | None
  max_position_embeddings: int
  type_vocab_size: int
  layer_norm_eps: float
  pad_token_id: int

  def __post_init__(self):
    super().__post_init__()
    if self.hidden_act not in layers.ACTIVATIONS:
      raise ValueError(
        f"hidden_act {self.hidden_act!r} is not supported; supported: {tuple(layers.ACTIVATIONS)}"
      )
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
      check_rate(name, getattr(self, name))

  @property
  def head_dropout(self) -> float:
    """Dropout rate of the classification head (HF: classifier_dropout or hidden)."""
    if self.classifier_dropout is None:
      return self.hidden_dropout_prob
    return self.classifier_dropout

  @property
  def position_offset(self) -> int:
    """Index of the first position (RoBERTa counts from pad_token_id + 1)."""
    return self.pad_token_id + 1 if self.model_type == "roberta" else 0

  @classmethod
  def supported_or_raise(cls, hf: dict[str, Any]) -> None:
    super().supported_or_raise(hf)
    refuse_unless(
      hf,
      "position_embedding_type",
      ("absolute",),
      default="absolute",
      fix="only 'absolute' position embeddings are implemented",
    )
    for key in ("is_decoder", "add_cross_attention"):
      refuse_unless(hf, key, (False, None), default=False, fix="use an encoder checkpoint")


class Embeddings(nn.Module):
  """Word + position + token-type embeddings of width `width` (default E), LayerNorm, dropout."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  width: int | None = None

  @nn.compact
  def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool):
    cfg = self.config
    width = self.width or cfg.hidden_size

    def embed(num: int, axes: tuple[str, str], name: str) -> layers.GatheredEmbed:
      return layers.embed(
        num,
        width,
        axes,
        stddev=cfg.initializer_range,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )

    x = embed(cfg.vocab_size, (sh.VOCAB, sh.EMBED), "word_embeddings")(input_ids)
    x = x + embed(cfg.type_vocab_size, (sh.TOKEN_TYPES, sh.EMBED), "token_type_embeddings")(
      token_type_ids
    )
    x = x + embed(cfg.max_position_embeddings, (sh.POSITIONS, sh.EMBED), "position_embeddings")(
      position_ids
    )
    x = layers.layer_norm(cfg.layer_norm_eps, self.dtype, self.param_dtype, "layer_norm")(x)
    return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


class SelfAttention(nn.Module):
  """Multi-head self-attention with per-head q/k/v kernels `[embed, heads, kv]`."""

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(
    self, x, padding: layers.KeyPadding, deterministic: bool, first_token_only: bool = False
  ):
    """Attends over the real tokens; with `first_token_only` only the first position queries
    (output `[batch, 1, E]`)."""
    cfg = self.config

    projections = [
      layers.HeadProjection(
        cfg.hidden_size,
        cfg.num_attention_heads,
        cfg.head_dim,
        cfg.initializer_range,
        self.param_dtype,
        name=name,
      )()
      for name in ("query", "key", "value")
    ]
    # One matmul for all three in GPU programs (`layers.project_heads`); with
    # `first_token_only` the queries of the other positions are computed and dropped.
    query, key, value = layers.project_heads(x, projections, self.dtype)
    out = layers.attend(
      self,
      query[:, :1] if first_token_only else query,
      key,
      value,
      padding,
      dropout_rate=cfg.attention_probs_dropout_prob,
      deterministic=deterministic,
      implementation=self.implementation,
      dtype=self.dtype,
    )
    return nn.DenseGeneral(
      cfg.hidden_size,
      axis=(-2, -1),
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      kernel_init=layers.normal_init(cfg.initializer_range, (sh.HEADS, sh.KV, sh.EMBED)),
      bias_init=layers.zeros_init((sh.EMBED,)),
      name="output",
    )(out)


class TransformerLayer(nn.Module):
  """One post-LayerNorm encoder layer: attention block then feed-forward block.

  A family whose layers differ from BERT's only in the attention (DeBERTa's disentangled
  attention) subclasses it and overrides `attend`; `context` is whatever its attention reads.
  """

  config: BertConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  implementation: str = "xla"

  @nn.compact
  def __call__(self, x, context: Any, deterministic: bool, first_token_only: bool = False):
    """`[batch, L, E] -> [batch, L, E]`, or `[batch, 1, E]` (first token) if `first_token_only`."""
    cfg = self.config
    drop = nn.Dropout(cfg.hidden_dropout_prob)
    norm = functools.partial(layers.layer_norm, cfg.layer_norm_eps, self.dtype, self.param_dtype)
    dense = functools.partial(
      layers.dense, stddev=cfg.initializer_range, dtype=self.dtype, param_dtype=self.param_dtype
    )
    attended = self.attend(x, context, deterministic, first_token_only)
    if first_token_only:
      x, attended = layers.first_position(x), layers.first_position(attended)
    x = norm("attention_norm")(x + drop(attended, deterministic=deterministic))
    y = dense(cfg.intermediate_size, (sh.EMBED, sh.MLP), name="intermediate")(x)
    y = dense(cfg.hidden_size, (sh.MLP, sh.EMBED), name="output")(
      layers.activation(cfg.hidden_act)(y)
    )
    out = norm("output_norm")(x + drop(y, deterministic=deterministic))
    return out[:, None] if first_token_only else out

  def attend(
    self, x, padding: layers.KeyPadding, deterministic: bool, first_token_only: bool
  ) -> jax.Array:
    """The attention sublayer's output `[batch, L or 1, E]` (submodule "attention")."""
    return SelfAttention(
      self.config, self.dtype, self.param_dtype, self.implementation, name="attention"
    )(x, padding, deterministic, first_token_only)


class Encoder(nn.Module):
  """Embeddings and `num_hidden_layers` transformer layers; returns `[b, L, E]`.

  With `first_token_only=True` the last layer computes the first position only: `[b, 1, E]`.
  The layers are laid out and run by `stack.run_layers` (per layer, or stacked with
  `scan_layers`). Subclasses change the input side by overriding `embed` (ELECTRA).
  """

  config: BertConfig
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
    length = input_ids.shape[1]
    offset = cfg.position_offset
    if length + offset > cfg.max_position_embeddings:
      raise ValueError(
        f"sequence length {length} exceeds the model's {cfg.max_position_embeddings - offset} "
        "positions; truncate inputs (max_length) to at most that"
      )
    if cfg.model_type == "roberta":
      # HF counts non-padding tokens from padding_idx + 1; padding gets padding_idx.
      keep = attention_mask.astype(jnp.bool_).astype(jnp.int32)
      position_ids = jnp.cumsum(keep, axis=1) * keep + cfg.pad_token_id
      token_type_ids = jnp.zeros_like(input_ids)
    else:
      position_ids = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), input_ids.shape)
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    x = self.embed(input_ids, token_type_ids, position_ids, deterministic)
    implementation = layers.resolve_attention(self.attention, self.dtype, cfg.head_dim)
    return stack.run_layers(
      TransformerLayer,
      (cfg, self.dtype, self.param_dtype, implementation),
      x,
      layers.KeyPadding.from_attention_mask(attention_mask),
      num_layers=cfg.num_hidden_layers,
      deterministic=deterministic,
      first_token_only=first_token_only,
      remat=self.remat,
      scan_layers=self.scan_layers,
      initializing=self.is_initializing(),
    )

  def embed(self, input_ids, token_type_ids, position_ids, deterministic: bool) -> jax.Array:
    """The first layer's input `[batch, L, E]` (submodule "embeddings")."""
    return Embeddings(self.config, self.dtype, self.param_dtype, name="embeddings")(
      input_ids, token_type_ids, position_ids, deterministic
    )


def embeddings_specs() -> list[convert.TensorSpec]:
  """HF `embeddings.*` <-> `encoder/embeddings/*`."""
  emb = ("encoder", "embeddings")
  return [
    *convert.embedding("embeddings.word_embeddings", (*emb, "word_embeddings")),
    *convert.embedding("embeddings.position_embeddings", (*emb, "position_embeddings")),
    *convert.embedding("embeddings.token_type_embeddings", (*emb, "token_type_embeddings")),
    *convert.norm("embeddings.LayerNorm", (*emb, "layer_norm")),
  ]


ATTENTION_PROJECTIONS = (("query", "query"), ("key", "key"), ("value", "value"))


def layer_specs(
  config: ModelConfig,
  projections: Sequence[tuple[str, str]] = ATTENTION_PROJECTIONS,
) -> list[convert.TensorSpec]:
  """HF `encoder.layer.{i}.*` <-> `encoder/layer_{i}/*`, for every layer.

  `projections` pairs each HF `attention.self.<name>` linear with our `attention/<name>`
  (DeBERTa: `query_proj` -> `query`, ...).
  """
  specs = []
  for i in range(config.num_hidden_layers):
    hf, ours = f"encoder.layer.{i}", ("encoder", f"{convert.LAYER_KEY_PREFIX}{i}")
    for hf_name, name in projections:
      specs += convert.linear(f"{hf}.attention.self.{hf_name}", (*ours, "attention", name))
    specs += convert.linear(f"{hf}.attention.output.dense", (*ours, "attention", "output"), 2)
    specs += convert.norm(f"{hf}.attention.output.LayerNorm", (*ours, "attention_norm"))
    specs += convert.linear(f"{hf}.intermediate.dense", (*ours, "intermediate"))
    specs += convert.linear(f"{hf}.output.dense", (*ours, "output"))
    specs += convert.norm(f"{hf}.output.LayerNorm", (*ours, "output_norm"))
  return specs


def bert_tensor_specs(config: BertConfig) -> list[convert.TensorSpec]:
  """Every tensor of `BertForSequenceClassification`."""
  return embeddings_specs() + layer_specs(config) + heads.pooler_head_specs()


def roberta_tensor_specs(config: BertConfig) -> list[convert.TensorSpec]:
  """Every tensor of `RobertaForSequenceClassification`."""
  return embeddings_specs() + layer_specs(config) + heads.two_layer_head_specs()


def tiny_config(model_type: str = "bert", **overrides) -> dict[str, Any]:
  """A small config.json dict of a BERT-bodied `model_type` (2 layers, width 32, 4 heads);
  RoBERTa's has its padding id 1, one token type and its LayerNorm epsilon."""
  roberta = model_type == "roberta"
  pad = 1 if roberta else 0
  hf = {
    "model_type": model_type,
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64 + pad + 1,
    "type_vocab_size": 1 if roberta else 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5 if roberta else 1e-12,
    "pad_token_id": pad,
    "bos_token_id": 0,
    "eos_token_id": 2,
  }
  hf.update(overrides)
  return hf


# Defaults of transformers' BertConfig for keys a config.json may omit.
BERT_DEFAULTS: dict[str, Any] = {
  "vocab_size": 30522,
  "hidden_size": 768,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "intermediate_size": 3072,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "attention_probs_dropout_prob": 0.1,
  "classifier_dropout": None,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
  "initializer_range": 0.02,
  "layer_norm_eps": 1e-12,
  "pad_token_id": 0,
}

BERT = registry.Family(
  model_type="bert",
  config_class=BertConfig,
  defaults=BERT_DEFAULTS,
  encoder=Encoder,
  head=heads.PoolerHead,
  tensor_specs=bert_tensor_specs,
  hf_prefix="bert",
  architecture="BertForSequenceClassification",
  tiny_config=functools.partial(tiny_config, "bert"),
)

ROBERTA = registry.Family(
  model_type="roberta",
  config_class=BertConfig,
  defaults={
    **BERT_DEFAULTS,
    "vocab_size": 50265,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
  },
  encoder=Encoder,
  head=heads.TwoLayerHead,
  tensor_specs=roberta_tensor_specs,
  hf_prefix="roberta",
  architecture="RobertaForSequenceClassification",
  tiny_config=functools.partial(tiny_config, "roberta"),
  tiny_tokenizer="byte_level_bpe",
)

"""Sequence-classification heads on the first token, as in transformers, and their initialisation.

  PoolerHead (BERT):                logits = Dropout(tanh(h_0 W_p + b_p)) W_c + b_c
                                    (pooler, classifier; DeBERTa: Dropout(h_0) and its own
                                    activation, `deberta.ContextPoolerHead`)
  TwoLayerHead (RoBERTa, ELECTRA):  logits = Dropout(act(Dropout(h_0) W_d + b_d)) W_o + b_o
                                    (dense, out_proj; act = tanh for RoBERTa, gelu for ELECTRA)

h_0 is the first token's last hidden state. `num_labels == 1` gives one output, used as a
regression score (STS-B). Dropout is the config's `head_dropout`. New heads are initialised
like HF: kernels from N(0, initializer_range²), biases zero.

A family's head is built as `head(config, dtype, param_dtype)` and called as
`head(hidden [batch, L, E], attention_mask [batch, L], deterministic=...)`; these heads ignore
the mask (a pooling head would use it).

References:
  transformers' `BertForSequenceClassification`, `RobertaClassificationHead` and
  `ElectraClassificationHead`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import convert, layers, registry
from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig

Dtype = Any


class PoolerHead(nn.Module):
  """BERT's pooler (dense + tanh on the first token), dropout and the linear classifier.

  A family whose pooler differs in its activation or drops out its input first (DeBERTa's
  context pooler) overrides `pooler_activation` / `pooler_input_dropout`.
  """

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def pooler_activation(self) -> str:
    """The pooler's activation, a name in `layers.ACTIVATIONS`."""
    return "tanh"

  def pooler_input_dropout(self) -> float:
    """The dropout rate on the first token before the pooler."""
    return 0.0

  @nn.compact
  def __call__(self, hidden: jax.Array, attention_mask=None, deterministic: bool = True):
    cfg = self.config
    kw = dict(stddev=cfg.initializer_range, dtype=self.dtype, param_dtype=self.param_dtype)
    first = hidden[:, 0]
    if rate := self.pooler_input_dropout():
      # Only then a module: Flax names dropouts in call order and folds the name into their
      # key, so BERT's head dropout is `Dropout_0` and its masks do not depend on this one.
      first = nn.Dropout(rate)(first, deterministic=deterministic)
    pooled = layers.dense(cfg.hidden_size, (sh.EMBED, sh.POOLED), name="pooler", **kw)(first)
    pooled = layers.activation(self.pooler_activation())(pooled)
    pooled = nn.Dropout(cfg.head_dropout)(pooled, deterministic=deterministic)
    return layers.dense(cfg.num_labels, (sh.EMBED, sh.CLASSES), name="classifier", **kw)(pooled)


class TwoLayerHead(nn.Module):
  """Dropout, dense + `activation` on the first token, dropout, output projection."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  activation: str = "tanh"

  @nn.compact
  def __call__(self, hidden: jax.Array, attention_mask=None, deterministic: bool = True):
    cfg = self.config
    kw = dict(stddev=cfg.initializer_range, dtype=self.dtype, param_dtype=self.param_dtype)
    drop = nn.Dropout(cfg.head_dropout)
    x = drop(hidden[:, 0], deterministic=deterministic)
    x = layers.dense(cfg.hidden_size, (sh.EMBED, sh.POOLED), name="dense", **kw)(x)
    x = drop(layers.activation(self.activation)(x), deterministic=deterministic)
    return layers.dense(cfg.num_labels, (sh.EMBED, sh.CLASSES), name="out_proj", **kw)(x)


def pooler_head_specs(prefixed_pooler: bool = True) -> list[convert.TensorSpec]:
  """HF names of `PoolerHead`'s tensors: `<prefix>.pooler.dense` (`pooler.dense` when not
  `prefixed_pooler`, as in DeBERTa), `classifier`."""
  return [
    *convert.linear("pooler.dense", ("head", "pooler"), prefixed=prefixed_pooler, in_head=True),
    *convert.linear(
      "classifier", ("head", "classifier"), prefixed=False, in_head=True, per_label=True
    ),
  ]


def two_layer_head_specs() -> list[convert.TensorSpec]:
  """HF names of `TwoLayerHead`'s tensors: `classifier.dense`, `classifier.out_proj`."""
  head = {"prefixed": False, "in_head": True}
  return [
    *convert.linear("classifier.dense", ("head", "dense"), **head),
    *convert.linear("classifier.out_proj", ("head", "out_proj"), per_label=True, **head),
  ]


def init_head(config: ModelConfig, seed: int, param_dtype: Dtype = jnp.float32) -> dict:
  """Freshly initialised parameters (plain dict) of the family's head, from `seed`."""
  head = registry.get(config.model_type).head(config, jnp.float32, param_dtype)
  hidden = jnp.zeros((1, 1, config.hidden_size), jnp.float32)
  mask = jnp.ones((1, 1), jnp.int32)
  variables = head.init(jax.random.key(seed), hidden, mask, deterministic=True)
  return nn.meta.unbox(variables["params"])

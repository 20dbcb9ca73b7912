"""Sequence-classification heads of BERT and RoBERTa, as in transformers.

  BERT:     logits = Dropout(tanh(h_[CLS] W_p + b_p)) W_c + b_c        (pooler, classifier)
  RoBERTa:  logits = Dropout(tanh(Dropout(h_<s>) W_d + b_d)) W_o + b_o  (dense, out_proj)

`num_labels == 1` gives one output, used as a regression score (STS-B). New heads are
initialised like HF: kernels from N(0, initializer_range²), biases zero.

References:
  transformers' `BertForSequenceClassification` and `RobertaClassificationHead`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import sharding as sh
from pats_jax.models.config import ModelConfig

Dtype = Any


def _dense(config: ModelConfig, features: int, axes: tuple[str, str], dtype, param_dtype, name):
  return nn.Dense(
    features,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=nn.with_logical_partitioning(
      nn.initializers.normal(config.initializer_range), axes
    ),
    bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[1:]),
    name=name,
  )


class BertClassificationHead(nn.Module):
  """BERT pooler (dense + tanh on [CLS]), dropout and the linear classifier."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array, deterministic: bool = True) -> jax.Array:
    cfg = self.config
    pooled = _dense(
      cfg, cfg.hidden_size, (sh.EMBED, sh.POOLED), self.dtype, self.param_dtype, "pooler"
    )(hidden[:, 0])
    pooled = nn.Dropout(cfg.head_dropout)(jnp.tanh(pooled), deterministic=deterministic)
    return _dense(
      cfg, cfg.num_labels, (sh.EMBED, sh.CLASSES), self.dtype, self.param_dtype, "classifier"
    )(pooled)


class RobertaClassificationHead(nn.Module):
  """RoBERTa head: dropout, dense + tanh on <s>, dropout, output projection."""

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, hidden: jax.Array, deterministic: bool = True) -> jax.Array:
    cfg = self.config
    drop = nn.Dropout(cfg.head_dropout)
    x = drop(hidden[:, 0], deterministic=deterministic)
    x = _dense(cfg, cfg.hidden_size, (sh.EMBED, sh.POOLED), self.dtype, self.param_dtype, "dense")(
      x
    )
    x = drop(jnp.tanh(x), deterministic=deterministic)
    return _dense(
      cfg, cfg.num_labels, (sh.EMBED, sh.CLASSES), self.dtype, self.param_dtype, "out_proj"
    )(x)


def make_head(config: ModelConfig, dtype: Dtype, param_dtype: Dtype, name: str | None = None):
  """The classification head module of `config.model_type`."""
  cls = {"bert": BertClassificationHead, "roberta": RobertaClassificationHead}[config.model_type]
  return cls(config, dtype, param_dtype, name=name)


def init_head(config: ModelConfig, seed: int, param_dtype: Dtype = jnp.float32) -> dict:
  """Freshly initialised head parameters (plain dict) from `seed`."""
  head = make_head(config, jnp.float32, param_dtype)
  hidden = jnp.zeros((1, 1, config.hidden_size), jnp.float32)
  variables = head.init(jax.random.key(seed), hidden, deterministic=True)
  return nn.meta.unbox(variables["params"])

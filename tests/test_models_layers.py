"""The shared building blocks families use: the attention kernel paths and conversion helpers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pats_jax.models import convert, deberta, heads, layers, tiny
from pats_jax.models.config import ModelConfig


class _Attention(nn.Module):
  """`layers.attend` on given q, k, v (the explicit path needs a module for its rng)."""

  rate: float

  @nn.compact
  def __call__(self, q, k, v, padding, bias, scale, deterministic, mask=None):
    return layers.attend(
      self,
      q,
      k,
      v,
      padding,
      dropout_rate=self.rate,
      deterministic=deterministic,
      implementation="xla",
      dtype=jnp.float32,
      bias=bias,
      scale=scale,
      mask=mask,
    )


def reference(q, k, v, mask, bias, scale):
  """Softmax attention; `mask` `[batch, k_len]` (padding) or `[batch, 1, q_len, k_len]`."""
  logits = np.einsum("bqhd,bkhd->bhqk", q, k) * scale + bias
  logits = np.where(mask[:, None, None, :] if mask.ndim == 2 else mask, logits, -np.inf)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  return np.einsum("bhqk,bkhd->bqhd", weights, v)


def test_attention_paths_agree_with_bias_and_scale():
  rng = np.random.default_rng(0)
  q, k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(3))
  bias = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)
  attention_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  padding = layers.KeyPadding.from_attention_mask(jnp.asarray(attention_mask))
  expected = reference(q, k, v, attention_mask.astype(bool), bias, 0.3)
  xla = _Attention(0.0).apply({}, q, k, v, padding, bias, 0.3, True)
  np.testing.assert_allclose(xla, expected, rtol=1e-5, atol=1e-5)
  # The explicit-softmax (dropout) path, with a rate too small to drop anything.
  rngs = {"dropout": jax.random.key(0)}
  explicit = _Attention(1e-9).apply({}, q, k, v, padding, bias, 0.3, False, rngs=rngs)
  np.testing.assert_allclose(explicit, expected, rtol=1e-5, atol=1e-5)
  default_scale = _Attention(0.0).apply({}, q, k, v, padding, None, None, True)
  np.testing.assert_allclose(
    default_scale, reference(q, k, v, attention_mask.astype(bool), 0.0, 0.5), rtol=1e-5, atol=1e-5
  )


def test_attention_paths_take_a_key_window():
  """A banded mask (keys within ±2 of the query), ANDed with the padding on both XLA paths."""
  rng = np.random.default_rng(1)
  q, k, v = (rng.normal(size=(2, 5, 3, 4)).astype(np.float32) for _ in range(3))
  attention_mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
  padding = layers.KeyPadding.from_attention_mask(jnp.asarray(attention_mask))
  positions = np.arange(5)
  window = (np.abs(positions[:, None] - positions[None, :]) <= 2)[None, None]
  allowed = np.logical_and(window, attention_mask.astype(bool)[:, None, None, :])
  expected = reference(q, k, v, allowed, 0.0, 0.5)
  assert np.abs(expected - reference(q, k, v, attention_mask.astype(bool), 0.0, 0.5)).max() > 0.1
  xla = _Attention(0.0).apply({}, q, k, v, padding, None, None, True, jnp.asarray(window))
  np.testing.assert_allclose(xla, expected, rtol=1e-5, atol=1e-5)
  rngs = {"dropout": jax.random.key(0)}
  explicit = _Attention(1e-9).apply(
    {}, q, k, v, padding, None, None, False, jnp.asarray(window), rngs=rngs
  )
  np.testing.assert_allclose(explicit, expected, rtol=1e-5, atol=1e-5)


def test_conversion_helpers_without_biases():
  assert [s.hf_name for s in convert.linear("a.b", ("x",), bias=False)] == ["a.b.weight"]
  assert [s.path for s in convert.norm("n", ("y",), bias=False)] == [("y", "scale")]
  assert [s.kind for s in convert.linear("a.b", ("x",))] == ["linear", "bias"]


def _dropout_names(head: nn.Module, hidden: jax.Array) -> list[str]:
  """The names of the dropout modules `head` calls in training mode, in call order."""
  names = []

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout) and context.method_name == "__call__":
      names.append(context.module.name)
    return next_fun(*args, **kwargs)

  variables = head.init(jax.random.key(0), hidden)
  with nn.intercept_methods(record):
    head.apply(variables, hidden, deterministic=False, rngs={"dropout": jax.random.key(1)})
  return names


def test_pooler_head_dropouts_keep_their_names():
  """Flax folds a dropout's name into its key: BERT's head has one dropout, `Dropout_0`, so a
  seed draws the masks it drew before DeBERTa's input dropout shared the head; DeBERTa's
  context pooler adds its input dropout only at a rate above 0."""
  hidden = jnp.ones((2, 5, 32))
  bert = ModelConfig.from_hf_dict(tiny.tiny_config("bert", hidden_size=32), num_labels=2)
  assert _dropout_names(heads.PoolerHead(bert), hidden) == ["Dropout_0"]
  for rate, expected in ((0.1, ["Dropout_0", "Dropout_1"]), (0.0, ["Dropout_0"])):
    hf = tiny.tiny_config("deberta-v2", hidden_size=32, pooler_dropout=rate)
    config = ModelConfig.from_hf_dict(hf, num_labels=2)
    assert _dropout_names(deberta.ContextPoolerHead(config), hidden) == expected

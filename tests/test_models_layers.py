"""The shared building blocks families use: the attention kernel paths and conversion helpers."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


class _Projections(nn.Module):
  """Query, key and value of `x` as one matmul (`layers.project_heads`)."""

  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    projections = [
      layers.HeadProjection(8, 2, 4, 0.5, name=name)() for name in ("query", "key", "value")
    ]
    return layers.project_heads(x, projections, self.dtype)


def _dense_general_projections(params, x, dtype):
  """The same projections, each by its own `nn.DenseGeneral` (what the layers used to run)."""
  dense = nn.DenseGeneral((2, 4), dtype=dtype)
  return [dense.apply({"params": params[name]}, x) for name in ("query", "key", "value")]


def test_head_projection_params_are_dense_generals():
  x = jnp.ones((2, 3, 8))
  params = _Projections().init(jax.random.key(0), x)["params"]
  reference = nn.DenseGeneral((2, 4)).init(jax.random.key(0), x)["params"]
  for name in ("query", "key", "value"):
    leaves = nn.meta.unbox(params[name])
    assert jax.tree.map(jnp.shape, leaves) == jax.tree.map(jnp.shape, reference)
    assert params[name]["kernel"].names == ("embed", "heads", "kv")
    np.testing.assert_array_equal(leaves["bias"], 0.0)
  kernels = [nn.meta.unbox(params[name]["kernel"]) for name in ("query", "key", "value")]
  assert all(float(np.std(k)) > 0.2 for k in kernels)
  assert not np.allclose(kernels[0], kernels[1])  # Each its own draw.


@pytest.mark.parametrize("joined", [True, False])
def test_project_heads_matches_separate_projections_and_their_gradients(joined):
  x = jax.random.normal(jax.random.key(1), (2, 5, 8))
  module = _Projections()
  params = nn.meta.unbox(module.init(jax.random.key(2), x)["params"])
  params = jax.tree.map(  # Non-zero biases, so that a misplaced bias would show.
    lambda p: p + jax.random.normal(jax.random.key(3), p.shape), params
  )
  with layers.joined_projections(joined):
    assert layers.projections_joined() is joined
    jaxpr = str(jax.make_jaxpr(lambda x: module.apply({"params": params}, x))(x))
    assert jaxpr.count("dot_general") == (1 if joined else 3)
    projected = module.apply({"params": params}, x)
  separate = _dense_general_projections(params, x, jnp.float32)
  for got, want in zip(projected, separate, strict=True):
    assert got.shape == (2, 5, 2, 4)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

  def loss(apply):
    def f(params, x):
      q, k, v = apply(params, x)
      return jnp.sum(jnp.sin(q) * 1.0 + jnp.cos(k) * 2.0 + v**2 * 3.0)

    return jax.grad(f, argnums=(0, 1))(params, x)

  with layers.joined_projections(joined):
    got = loss(lambda p, x: module.apply({"params": p}, x))
  want = loss(lambda p, x: _dense_general_projections(p, x, jnp.float32))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), got, want)


@pytest.mark.parametrize("joined", [True, False])
def test_project_heads_computes_in_the_compute_dtype(joined):
  x = jax.random.normal(jax.random.key(1), (2, 5, 8))
  module = _Projections(jnp.bfloat16)
  params = nn.meta.unbox(module.init(jax.random.key(2), x)["params"])
  with layers.joined_projections(joined):
    projected = module.apply({"params": params}, x)
  separate = _dense_general_projections(params, x, jnp.bfloat16)
  for got, want in zip(projected, separate, strict=True):
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(
      np.asarray(got, np.float32), np.asarray(want, np.float32), rtol=2e-2, atol=2e-2
    )


def test_first_position_keeps_the_dropout_masks_of_a_length_one_axis():
  # A first-token layer runs on `[batch, E]` (`layers.first_position`); its dropout must draw
  # what it drew on `[batch, 1, E]`, for every key implementation the trainer offers.
  x = jnp.ones((3, 5, 8))
  assert layers.first_position(x).shape == (3, 8)
  for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
    rngs = {"dropout": jax.random.key(7, impl=impl)}
    drop = nn.Dropout(0.5)
    with_axis = drop.apply({}, x[:, :1], deterministic=False, rngs=rngs)
    without = drop.apply({}, layers.first_position(x), deterministic=False, rngs=rngs)
    np.testing.assert_array_equal(with_axis[:, 0], without)
    assert 0 < float(jnp.mean(without == 0)) < 1

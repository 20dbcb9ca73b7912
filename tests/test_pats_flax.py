"""PATS with Flax: a linen `TrainState` and an `nnx.Optimizer`."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import nnx
from flax.training.train_state import TrainState

import pats_jax

STEPS = 20


def data():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 2, size=32))
  return x, y


def xent(logits, y):
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.LayerNorm()(nn.Dense(16)(x)))
    return nn.Dense(2)(x)


def train_linen(tx):
  x, y = data()
  model = LinenMLP()
  params = model.init(jax.random.key(0), x)["params"]
  state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)

  @jax.jit
  def step(state):
    loss, grads = jax.value_and_grad(lambda p: xent(state.apply_fn({"params": p}, x), y))(
      state.params
    )
    return state.apply_gradients(grads=grads), loss

  losses = []
  for _ in range(STEPS):
    state, loss = step(state)
    losses.append(float(loss))
  return state, losses


def test_linen_train_state():
  state, losses = train_linen(pats_jax.pats_adamw(1e-2, noise_scale=0.05, key=0))
  assert losses[-1] < 0.9 * losses[0]
  ps = pats_jax.find_pats_state(state.opt_state)
  assert int(ps.count) == STEPS
  chex.assert_shape(ps.sensitivity["Dense_0"]["kernel"], (4, 16))
  assert ps.sensitivity["Dense_0"]["bias"] == optax.MaskedNode()
  assert ps.sensitivity["LayerNorm_0"]["scale"] == optax.MaskedNode()
  stats = pats_jax.pats_statistics(state.params, state.opt_state, noise_scale=0.05)
  assert float(stats["selected"]) == 4 * 16 + 16 * 2 and float(stats["amplitude_mean"]) > 0
  # noise_scale = 0: the same training as plain AdamW, exactly.
  quiet, _ = train_linen(pats_jax.pats_adamw(1e-2, noise_scale=0.0, key=0))
  plain, _ = train_linen(pats_jax.adamw(1e-2))
  chex.assert_trees_all_equal(quiet.params, plain.params)
  noisy_vs_plain = jax.tree.map(
    lambda a, b: bool(jnp.array_equal(a, b)), state.params, plain.params
  )
  assert not noisy_vs_plain["Dense_0"]["kernel"] and noisy_vs_plain["Dense_0"]["bias"] is False


class NnxMLP(nnx.Module):
  def __init__(self, rngs: nnx.Rngs):
    self.dense_in = nnx.Linear(4, 16, rngs=rngs)
    self.norm = nnx.LayerNorm(16, rngs=rngs)
    self.dense_out = nnx.Linear(16, 2, rngs=rngs)

  def __call__(self, x):
    return self.dense_out(nnx.relu(self.norm(self.dense_in(x))))


def train_nnx(tx):
  x, y = data()
  model = NnxMLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: xent(m(x), y))(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(step(model, optimizer)) for _ in range(STEPS)]
  return model, optimizer, losses


def test_nnx_optimizer():
  model, optimizer, losses = train_nnx(pats_jax.pats_adamw(1e-2, noise_scale=0.05, key=0))
  assert losses[-1] < 0.9 * losses[0]
  ps = pats_jax.find_pats_state(nnx.as_pure(optimizer.opt_state))
  assert int(ps.count) == STEPS
  chex.assert_shape(ps.sensitivity["dense_in"]["kernel"], (4, 16))
  assert ps.sensitivity["dense_in"]["bias"] == optax.MaskedNode()
  assert ps.sensitivity["norm"]["scale"] == optax.MaskedNode()
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  stats = pats_jax.pats_statistics(params, ps, noise_scale=0.05)
  assert float(stats["selected"]) == 4 * 16 + 16 * 2
  # noise_scale = 0: the same training as plain AdamW, exactly.
  quiet, _, _ = train_nnx(pats_jax.pats_adamw(1e-2, noise_scale=0.0, key=0))
  plain, _, _ = train_nnx(pats_jax.adamw(1e-2))
  chex.assert_trees_all_equal(
    nnx.as_pure(nnx.state(quiet, nnx.Param)), nnx.as_pure(nnx.state(plain, nnx.Param))
  )
  assert not np.array_equal(model.dense_in.kernel[...], plain.dense_in.kernel[...])

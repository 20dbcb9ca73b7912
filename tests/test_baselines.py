"""The baselines' optimizer parts: SAGE, NoisyTune, AdamW's decay mask, PATS ablations."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import pats_jax


def bert_like_params(dtype=jnp.float32):
  rng = np.random.default_rng(0)
  arr = lambda *s: jnp.asarray(rng.normal(size=s) * 0.05, dtype)
  ln = lambda: {"scale": jnp.ones(8, dtype), "bias": jnp.zeros(8, dtype)}
  return {
    "embeddings": {
      "word_embeddings": {"embedding": arr(50, 8)},
      "position_embeddings": {"embedding": arr(16, 8)},
      "LayerNorm": ln(),
    },
    "encoder": {
      "layer": {
        "0": {
          "attention": {
            "self": {"query": {"kernel": arr(8, 8), "bias": arr(8)}},
            "output": {"dense": {"kernel": arr(8, 8), "bias": arr(8)}, "LayerNorm": ln()},
          },
          "intermediate": {"dense": {"kernel": arr(8, 32), "bias": arr(32)}},
        }
      }
    },
    "classifier": {"kernel": arr(8, 2), "bias": arr(2)},
  }


def hf_run_flax_glue_decay_mask(params):
  """Hugging Face run_flax_glue.py's decay_mask_fn (on a nested dict)."""
  flat = {}

  def walk(t, path):
    for k, v in t.items():
      if isinstance(v, dict):
        walk(v, (*path, k))
      else:
        flat[(*path, k)] = v

  walk(params, ())
  candidates = ["layernorm", "layer_norm", "ln"]
  ln_named = {layer[-2:] for name in candidates for layer in flat if name in "".join(layer).lower()}
  mask = {p: (p[-1] != "bias" and p[-2:] not in ln_named) for p in flat}
  out: dict = {}
  for p, m in mask.items():
    d = out
    for k in p[:-1]:
      d = d.setdefault(k, {})
    d[p[-1]] = m
  return out


def test_weight_matrix_mask_is_hf_decay_mask_on_bert():
  params = bert_like_params()
  assert pats_jax.weight_matrix_mask(params) == hf_run_flax_glue_decay_mask(params)


def test_adamw_decays_matrices_only():
  params = bert_like_params()
  zero = jax.tree.map(jnp.zeros_like, params)
  opt = pats_jax.adamw(0.1, weight_decay=0.5)
  updates, _ = opt.update(zero, opt.init(params), params)  # zero grads: decay alone
  for m, u, p in zip(
    jax.tree.leaves(pats_jax.weight_matrix_mask(params)),
    jax.tree.leaves(updates),
    jax.tree.leaves(params),
    strict=True,
  ):
    np.testing.assert_allclose(u, -0.1 * 0.5 * p if m else 0.0, rtol=1e-6, atol=1e-9)


# --- SAGE ---------------------------------------------------------------------------


def np_sage(params, grads_seq, *, lr, beta3, eps):
  """SAGE around sgd(lr), in NumPy: the inner step -lr·g scaled by U / (Ī_bc + eps)."""
  theta, avg, out = params.astype(np.float64), np.zeros(params.shape), []
  for t, g in enumerate(grads_seq, start=1):
    sens = np.abs(theta * g)
    avg = beta3 * avg + (1 - beta3) * sens
    i_bc = avg / (1 - beta3**t)
    u = np.abs(sens - i_bc)
    step = -lr * g * u / (i_bc + eps)
    out.append(step)
    theta = theta + step
  return out, avg


class SageTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_sage_matches_numpy(self):
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(5, 4)).astype(np.float32)
    grads = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(5)]
    expected, avg = np_sage(theta, grads, lr=0.1, beta3=0.8, eps=1e-8)
    opt = pats_jax.sage(optax.sgd(0.1), beta3=0.8, eps=1e-8)
    params = {"w": jnp.asarray(theta), "b": jnp.ones(3)}
    state = opt.init(params)
    update = self.variant(opt.update)
    for t, g in enumerate(grads):
      updates, state = update({"w": jnp.asarray(g), "b": jnp.ones(3)}, state, params)
      chex.assert_trees_all_close(updates["w"], expected[t], rtol=2e-4, atol=1e-7)
      params = optax.apply_updates(params, updates)
    chex.assert_trees_all_close(state.sensitivity["w"], avg, rtol=1e-4)
    assert int(state.count) == 5

  @chex.variants(with_jit=True, without_jit=True)
  def test_sage_mask_and_first_step(self):
    dtype = jnp.float32
    params = {"w": jnp.ones((2, 3), dtype), "b": jnp.ones(3, dtype)}
    grads = {"w": jnp.full((2, 3), 0.5, dtype), "b": jnp.full(3, 0.5, dtype)}
    opt = pats_jax.sage(optax.sgd(1.0), mask={"w": True, "b": False})
    state = opt.init(params)
    assert state.sensitivity["b"] == optax.MaskedNode()
    update = self.variant(opt.update)
    updates, state = update(grads, state, params)
    chex.assert_trees_all_close(updates["w"], jnp.zeros((2, 3), dtype), atol=1e-6)  # U = 0
    chex.assert_trees_all_equal(updates["b"], jnp.full(3, -0.5, dtype))  # sgd's step
    updates, state = update(grads, state, params)
    chex.assert_type([updates["w"], state.sensitivity["w"]], dtype)
    assert int(state.count) == 2


@pytest.mark.parametrize(
  ("kwargs", "match"),
  [({"beta3": 1.0}, "beta3 must be in"), ({"eps": -1.0}, "eps must be a finite")],
)
def test_sage_bad_knobs(kwargs, match):
  with pytest.raises(ValueError, match=match):
    pats_jax.sage(optax.sgd(1.0), **kwargs)


# --- NoisyTune ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_noisytune_perturbs_matrices_within_bounds(dtype):
  params = bert_like_params(dtype)
  new = jax.jit(lambda p: pats_jax.noisytune(p, jax.random.key(3), scale=0.15))(params)
  mask = pats_jax.weight_matrix_mask(params)
  for m, p, q in zip(
    jax.tree.leaves(mask), jax.tree.leaves(params), jax.tree.leaves(new), strict=True
  ):
    chex.assert_type(q, dtype)
    chex.assert_shape(q, p.shape)
    p32, q32 = np.asarray(p, np.float32), np.asarray(q, np.float32)
    if not m:
      np.testing.assert_array_equal(q32, p32)
      continue
    bound = 0.15 * np.std(p32.astype(np.float64)) / 2
    slack = 0 if dtype == jnp.float32 else 2**-7 * np.abs(p32).max()  # bf16 rounding
    assert np.all(np.abs(q32 - p32) <= bound * (1 + 1e-6) + slack)
    assert np.abs(q32 - p32).max() > 0.5 * bound


def test_noisytune_matches_reference_noise_and_is_deterministic():
  params = {
    "a": jnp.asarray(np.random.default_rng(0).normal(size=(6, 4)), jnp.float32),
    "b": jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32),
  }
  key = jax.random.key(11)
  new = pats_jax.noisytune(params, key, scale=0.2)
  keys = jax.random.split(key, 2)
  for k, name in zip(keys, ["a", "b"], strict=True):
    eps = jax.random.uniform(k, params[name].shape, jnp.float32, -0.5, 0.5)
    expected = params[name] + 0.2 * np.std(np.asarray(params[name], np.float64)) * eps
    chex.assert_trees_all_close(new[name], expected, rtol=1e-6)
  chex.assert_trees_all_equal(new, pats_jax.noisytune(params, 11, scale=0.2))
  only_b = pats_jax.noisytune(params, 11, scale=0.2, mask={"a": False, "b": True})
  chex.assert_trees_all_equal(only_b["a"], params["a"])


# --- PATS ablations as knobs ------------------------------------------------------------


def test_sensitivity_blind_noise_is_uniform_amplitude():
  """normalize="none": every selected element gets a = λ·std(θ_W), whatever its grad."""
  params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(16, 8)), jnp.float32)}
  grads = {"w": jnp.asarray(np.random.default_rng(1).normal(size=(16, 8)), jnp.float32)}
  opt = pats_jax.pats(optax.set_to_zero(), noise_scale=0.1, key=0, normalize="none")
  state = opt.init(params)
  updates, state = opt.update(grads, state, params)
  a = pats_jax.noise_amplitude(params, state.sensitivity, noise_scale=0.1, normalize="none")
  chex.assert_trees_all_close(
    a["w"], np.full((16, 8), 0.1 * np.std(np.asarray(params["w"], np.float64))), rtol=1e-6
  )
  assert np.all(np.abs(np.asarray(updates["w"])) <= np.asarray(a["w"]) / 2)


def test_gradient_noise_baseline_is_optax_add_noise():
  opt = optax.chain(optax.add_noise(0.01, 0.55, key=0), optax.sgd(0.1))
  params = jnp.ones(3)
  updates, _ = opt.update(jnp.ones(3), opt.init(params), params)
  chex.assert_shape(updates, (3,))
  assert not np.allclose(updates, -0.1)  # noise was added to sgd's step

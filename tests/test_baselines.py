"""The baselines' optimizer parts: SAGE, NoisyTune, AdamW's decay mask, PATS ablations; SAGE's
options in the trainer's config."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import REPO_ROOT, load_config, tiny_config

import pats_jax
from pats_jax import models
from pats_jax.models import tiny
from pats_jax.training import optimizers, validate


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
    opt = pats_jax.sage(optax.sgd(0.1), beta3=0.8, eps=1e-8, mask=pats_jax.all_leaves_mask)
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


def test_sage_with_a_mask_that_selects_nothing_says_how_to_fix_it():
  opt = pats_jax.sage(optax.sgd(1.0))  # default: the encoder layers' linear layers
  with pytest.raises(ValueError, match=r"mask=pats_jax\.all_leaves_mask"):
    opt.init({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})


# --- SAGE as in its reference code: encoder linear layers, decay after the scaled step ------

# The linear layers of a `pats_jax.models` encoder layer: SAGE's code selects the parameters
# named attention.self (query, key, value), attention.output.dense, intermediate.dense and
# output.dense, weights and biases.
ENCODER_LINEAR = [
  f"{block}/{kind}"
  for block in (
    "attention/query",
    "attention/key",
    "attention/value",
    "attention/output",
    "intermediate",
    "output",
  )
  for kind in ("kernel", "bias")
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
  """A tiny BERT's params with separate layers and with stacked ones (`scan_layers=True`)."""
  folder = tiny.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_bert"), tokenizer=False)
  return {scan: models.load(folder, num_labels=2, scan_layers=scan).params for scan in (0, 1)}


def _selected_paths(mask_tree) -> set[str]:
  return {
    "/".join(str(entry.key) for entry in path)
    for path, selected in jax.tree_util.tree_leaves_with_path(mask_tree)
    if selected
  }


def _paths_with_state(tree) -> set[str]:
  """The leaves of an EMA tree that hold an array (not `optax.MaskedNode`)."""
  return {
    "/".join(str(entry.key) for entry in path)
    for path, _ in jax.tree_util.tree_leaves_with_path(tree)
  }


@pytest.mark.parametrize("stacked", [False, True], ids=["layer_i", "scan_layers"])
def test_sage_default_mask_is_the_encoder_layers_linear_layers(tiny_bert, stacked):
  params = tiny_bert[stacked]
  layers = ["encoder/layers"] if stacked else ["encoder/layer_0", "encoder/layer_1"]
  expected = {f"{layer}/{leaf}" for layer in layers for leaf in ENCODER_LINEAR}
  assert _selected_paths(pats_jax.encoder_linear_mask(params)) == expected
  state = pats_jax.sage(optax.sgd(1.0)).init(params)  # the default mask
  assert _paths_with_state(state.sensitivity) == expected


def test_encoder_linear_mask_on_hugging_face_flax_names():
  expected = {
    f"encoder/layer/0/{block}/{kind}"
    for block in ("attention/self/query", "attention/output/dense", "intermediate/dense")
    for kind in ("kernel", "bias")
  }
  assert _selected_paths(pats_jax.encoder_linear_mask(bert_like_params())) == expected


def np_sage_adamw(theta, grads_seq, selected, *, lr, wd, beta3, scale_weight_decay):
  """AdamW-SAGE on one decayed matrix in NumPy (b1 0.9, b2 0.999, eps 1e-6, SAGE eps 1e-12).

  Adam's moments see the raw gradient; on a `selected` leaf the Adam step is scaled by
  F = U / (Ī_bc + 1e-12), and the decay −lr·wd·θ is added after it (or scaled with it).
  """
  theta = theta.astype(np.float64)
  m, v, avg, out = np.zeros(theta.shape), np.zeros(theta.shape), np.zeros(theta.shape), []
  for t, g in enumerate(grads_seq, start=1):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    adam = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-6)
    sens = np.abs(theta * g)
    avg = beta3 * avg + (1 - beta3) * sens
    i_bc = avg / (1 - beta3**t)
    factor = np.abs(sens - i_bc) / (i_bc + 1e-12) if selected else 1.0
    if scale_weight_decay:
      step = -lr * factor * (adam + wd * theta)
    else:
      step = -lr * (factor * adam + wd * theta)
    out.append(step)
    theta = theta + step
  return out


@pytest.mark.parametrize("scale_weight_decay", [False, True])
@pytest.mark.parametrize("selected", [True, False])
def test_sage_adamw_matches_numpy(scale_weight_decay, selected):
  rng = np.random.default_rng(2)
  theta = rng.normal(size=(6, 5)).astype(np.float32)
  grads = [rng.normal(size=(6, 5)).astype(np.float32) for _ in range(5)]
  expected = np_sage_adamw(
    theta, grads, selected, lr=0.01, wd=0.1, beta3=0.7, scale_weight_decay=scale_weight_decay
  )
  opt = pats_jax.sage_adamw(
    0.01,
    weight_decay=0.1,
    beta3=0.7,
    mask={"w": selected, "v": True},
    scale_weight_decay=scale_weight_decay,
  )
  params = {"w": jnp.asarray(theta), "v": jnp.ones((2, 2))}
  state = opt.init(params)
  update = jax.jit(opt.update)
  for t, g in enumerate(grads):
    updates, state = update({"w": jnp.asarray(g), "v": jnp.ones((2, 2))}, state, params)
    chex.assert_trees_all_close(updates["w"], expected[t], rtol=2e-4, atol=1e-7)
    params = optax.apply_updates(params, updates)


def _at(tree, path):
  for entry in path:
    tree = tree[entry.key]
  return tree


def _first_update(opt, params, seed=3):
  rng = np.random.default_rng(seed)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  return opt.update(grads, opt.init(params), params)[0]


def test_sage_adamw_applies_the_weight_decay_unscaled(tiny_bert):
  """Step 1 has U = 0 (exactly, with β3 = 0.5): a scaled leaf moves by −lr·wd·θ alone."""
  params = tiny_bert[True]
  lr, wd = 0.1, 0.5
  updates = _first_update(pats_jax.sage_adamw(lr, weight_decay=wd, beta3=0.5), params)
  plain = _first_update(pats_jax.adamw(lr, weight_decay=wd), params)
  scaled = pats_jax.encoder_linear_mask(params)
  decayed = pats_jax.weight_matrix_mask(params)
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    where = jax.tree_util.keystr(path)
    theta = np.asarray(_at(params, path))
    if not _at(scaled, path):
      np.testing.assert_array_equal(update, _at(plain, path), err_msg=where)  # plain AdamW
    elif _at(decayed, path):
      np.testing.assert_allclose(update, -lr * wd * theta, rtol=1e-6, atol=0, err_msg=where)
    else:  # a bias: no decay, and the scaled Adam step is zero
      np.testing.assert_array_equal(update, np.zeros_like(theta), err_msg=where)


def test_sage_adamw_old_form_scales_everything_like_sage_around_adamw(tiny_bert):
  """`scale_weight_decay=True` with `all_leaves_mask` is `sage(adamw(...))` on every leaf."""
  params = tiny_bert[False]
  old = pats_jax.sage(pats_jax.adamw(0.1, weight_decay=0.5), mask=pats_jax.all_leaves_mask)
  new = pats_jax.sage_adamw(
    0.1, weight_decay=0.5, mask=pats_jax.all_leaves_mask, scale_weight_decay=True
  )
  state_old, state_new = old.init(params), new.init(params)
  rng = np.random.default_rng(4)
  for _ in range(3):
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    updates_old, state_old = old.update(grads, state_old, params)
    updates_new, state_new = new.update(grads, state_new, params)
    chex.assert_trees_all_equal(updates_new, updates_old)
    params = optax.apply_updates(params, updates_new)


def test_trainer_sage_follows_the_reference_and_keeps_the_study_form_as_an_option(tiny_bert):
  params = tiny_bert[False]

  def first_update(method, **values):
    config = tiny_config(
      arg=f"method={method}", learning_rate=1e-3, warmup_ratio=0.0, sage__beta3=0.5, **values
    )
    validate.check_config(config)
    return _first_update(optimizers.make_optimizer(config, num_updates=10).tx, params)

  kernel = ("encoder", "layer_0", "intermediate", "kernel")
  default, plain = first_update("sage"), first_update("plain")
  by_path = lambda tree, *keys: _at(tree, [jax.tree_util.DictKey(k) for k in keys])
  theta = np.asarray(by_path(params, *kernel))
  np.testing.assert_allclose(by_path(default, *kernel), -1e-3 * 0.01 * theta, rtol=1e-6, atol=0)
  embedding = ("encoder", "embeddings", "word_embeddings", "embedding")
  np.testing.assert_array_equal(by_path(default, *embedding), by_path(plain, *embedding))
  # The study's form: every leaf scaled, decay included, so step 1 (U = 0) is zero everywhere.
  study = first_update("sage", sage__scaled_leaves="all", sage__scale_weight_decay=True)
  for leaf in jax.tree.leaves(study):
    np.testing.assert_array_equal(leaf, np.zeros_like(leaf))
  study_config = load_config(REPO_ROOT / "configs/study/minilm.py", "method=sage")
  assert (study_config.sage.scaled_leaves, study_config.sage.scale_weight_decay) == ("all", True)
  with pytest.raises(validate.ConfigError, match=r"config\.sage\.scaled_leaves='encoder'"):
    validate.check_config(tiny_config(sage__scaled_leaves="encoder"))


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

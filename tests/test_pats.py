"""PATS step by step (the `pats` docstring's steps 1-7), against NumPy computing the same."""

from __future__ import annotations

import doctest
import fractions
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

import pats_jax
from pats_jax import _adamw, _masks, _noisytune, _pats, _sage, _steps, _threefry

# --- the reference: the steps in NumPy (float64) ----------------------------------------


def np_normalize(imp, method):
  """Step 4 in NumPy. Rank ties take the lowest rank."""
  if method == "none":
    return np.zeros_like(imp)
  if method == "rank":
    flat = np.sort(imp.ravel())
    return np.searchsorted(flat, imp, side="left") / max(imp.size - 1, 1)
  lo, hi = imp.min(), imp.max()
  return np.zeros_like(imp) if hi == lo else (imp - lo) / (hi - lo)


def np_importance(theta, g, s_hat, u_hat, beta1=0.85, beta2=None, sensitivity="taylor"):
  """Steps 1-3 for one leaf: the new EMAs and the importance I."""
  s = np.abs(g) if sensitivity == "gradient" else np.abs(theta * g)  # 1
  s_hat = beta1 * s_hat + (1 - beta1) * s  # 2
  if beta2 is None:  # 3
    return s_hat, u_hat, s_hat
  u_hat = beta2 * u_hat + (1 - beta2) * np.abs(s - s_hat)
  return s_hat, u_hat, s_hat * u_hat


def np_step(
  theta,
  g,
  s_hat,
  u_hat,
  *,
  lam,
  beta1=0.85,
  beta2=None,
  sensitivity="taylor",
  normalize="minmax",
  direction="normal",
):
  """Steps 1-5 for one leaf: the new EMAs, r and the amplitude a."""
  s_hat, u_hat, imp = np_importance(theta, g, s_hat, u_hat, beta1, beta2, sensitivity)  # 1-3
  r = np_normalize(imp, normalize)  # 4
  a = lam * np.std(theta) * (r if direction == "inverse" else 1 - r)  # 5
  return s_hat, u_hat, r, a


def reference_eps(state_key, shapes, distribution="uniform"):
  """Step 6's ε: the state's key split once, then one key per selected leaf."""
  _, noise_key = jax.random.split(state_key)
  keys = jax.random.split(noise_key, len(shapes))
  if distribution == "uniform":
    return [
      np.asarray(jax.random.uniform(k, s, jnp.float32, -0.5, 0.5))
      for k, s in zip(keys, shapes, strict=True)
    ]
  return [
    np.asarray(jax.random.normal(k, s, jnp.float32)) for k, s in zip(keys, shapes, strict=True)
  ]


def make_params(seed=0):
  rng = np.random.default_rng(seed)
  return {
    "dense": {
      "kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=5), jnp.float32),
    },
    "emb": jnp.asarray(rng.normal(size=(7, 3)) * 0.1, jnp.float32),
  }


def make_grads(params, seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


SELECTED = [("dense", "kernel"), ("emb",)]  # the weight matrices, in leaf order


def get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


# --- the transformation, jitted and not (chex variants) -----------------------------------


class PatsStepsTest(chex.TestCase):
  """Steps 1-7 of `pats` against the NumPy reference, with and without `jax.jit`."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(sensitivity=["taylor", "gradient"], beta2=[None, 0.7])
  def test_emas_after_several_steps(self, sensitivity, beta2):
    params = make_params()
    opt = pats_jax.pats(
      optax.sgd(0.05), noise_scale=0.3, key=1, beta1=0.8, beta2=beta2, sensitivity=sensitivity
    )
    state = opt.init(params)
    update = self.variant(opt.update)
    ref = {p: [np.zeros(get(params, p).shape), np.zeros(get(params, p).shape)] for p in SELECTED}
    for t in range(5):
      grads = make_grads(params, seed=10 + t)
      for p in SELECTED:
        s_hat, u_hat, _, _ = np_step(
          np.asarray(get(params, p), np.float64),
          np.asarray(get(grads, p), np.float64),
          *ref[p],
          lam=0.3,
          beta1=0.8,
          beta2=beta2,
          sensitivity=sensitivity,
        )
        ref[p] = [s_hat, u_hat]
      updates, state = update(grads, state, params)
      params = optax.apply_updates(params, updates)  # θ moves, with noise: EMAs see it
    assert int(state.count) == 5
    for p in SELECTED:
      chex.assert_trees_all_close(get(state.sensitivity, p), ref[p][0], rtol=2e-5, atol=1e-7)
      if beta2 is None:
        assert state.uncertainty is None
      else:
        chex.assert_trees_all_close(get(state.uncertainty, p), ref[p][1], rtol=2e-5, atol=1e-7)
    assert state.sensitivity["dense"]["bias"] == optax.MaskedNode()

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
    ("minmax", "normal", "uniform", None),
    ("rank", "normal", "uniform", None),
    ("none", "normal", "uniform", None),
    ("minmax", "inverse", "uniform", None),
    ("minmax", "normal", "gaussian", None),
    ("rank", "inverse", "gaussian", 0.9),
  )
  def test_noise_matches_reference(self, normalize, direction, distribution, beta2):
    """Steps 1-7 at step 3, with inner = zero: the updates are the noise n = a ⊙ ε."""
    params = make_params()
    opt = pats_jax.pats(
      optax.set_to_zero(),
      noise_scale=0.2,
      key=jax.random.key(7),
      beta2=beta2,
      normalize=normalize,
      direction=direction,
      distribution=distribution,
    )
    state = opt.init(params)
    update = self.variant(opt.update)
    ref = {p: [np.zeros(get(params, p).shape), np.zeros(get(params, p).shape)] for p in SELECTED}
    for t in range(3):
      grads = make_grads(params, seed=20 + t)
      eps = reference_eps(state.key, [get(params, p).shape for p in SELECTED], distribution)
      updates, state = update(grads, state, params)
      for j, p in enumerate(SELECTED):
        s_hat, u_hat, _, a = np_step(
          np.asarray(get(params, p), np.float64),
          np.asarray(get(grads, p), np.float64),
          *ref[p],
          lam=0.2,
          beta2=beta2,
          normalize=normalize,
          direction=direction,
        )
        ref[p] = [s_hat, u_hat]
        chex.assert_trees_all_close(get(updates, p), a * eps[j], rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_equal(updates["dense"]["bias"], jnp.zeros(5))  # step 7: not selected

  @chex.variants(with_jit=True, without_jit=True)
  def test_schedule_is_evaluated_at_the_step_count(self):
    """λ_t = schedule(count), count = steps taken before this one (0 at step 1)."""
    params = make_params()
    opt = pats_jax.pats(optax.sgd(0.1), noise_scale=lambda count: 0.1 * (count + 1), key=0)
    state = opt.init(params)
    update = self.variant(opt.update)
    for t in range(3):
      grads = make_grads(params, t)
      const = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1 * (t + 1), key=0)
      expected, _ = const.update(grads, state, params)  # same state: same key, same EMAs
      updates, state = update(grads, state, params)
      chex.assert_trees_all_close(updates, expected, rtol=1e-6)
      params = optax.apply_updates(params, updates)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(dtype=[jnp.float32, jnp.bfloat16], noise_scale=[0, 0.0, "array"])
  def test_noise_scale_zero_is_exactly_inner(self, dtype, noise_scale):
    params = jax.tree.map(lambda x: x.astype(dtype), make_params())
    if noise_scale == "array":
      noise_scale = jnp.zeros((), jnp.float32)  # not skippable at trace time: computed as 0
    inner = optax.adamw(1e-2, weight_decay=0.1)
    opt = pats_jax.pats(inner, noise_scale=noise_scale, key=0, beta2=0.9)
    ref_state, state = inner.init(params), opt.init(params)
    ref_update, update = self.variant(inner.update), self.variant(opt.update)
    ref_params = params
    for t in range(4):
      grads = make_grads(params, seed=t)
      ref_updates, ref_state = ref_update(grads, ref_state, ref_params)
      updates, state = update(grads, state, params)
      chex.assert_trees_all_equal(updates, ref_updates)
      chex.assert_trees_all_equal(state.inner_state, ref_state)
      params = optax.apply_updates(params, updates)
      ref_params = optax.apply_updates(ref_params, ref_updates)
    chex.assert_trees_all_equal_structs(state.inner_state, ref_state)
    assert int(state.count) == 4

  @chex.variants(with_jit=True, without_jit=True)
  def test_same_key_same_updates_other_key_other_updates(self):
    params = make_params()
    grads = make_grads(params, 0)

    def run(key):
      opt = pats_jax.pats(optax.adam(1e-2), noise_scale=0.1, key=key)
      state, update, out = opt.init(params), self.variant(opt.update), []
      for _ in range(3):
        u, state = update(grads, state, params)
        out.append(u)
      return out

    a, b, c = run(0), run(jax.random.key(0)), run(1)
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a[0]["emb"], c[0]["emb"])
    assert not np.array_equal(a[0]["emb"], a[1]["emb"])  # the key is split every step
    chex.assert_trees_all_equal(a, run(jax.random.PRNGKey(0)))  # a raw uint32 key too


# --- steps 4-6 in detail ------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["normal", "inverse"])
@pytest.mark.parametrize("normalize", ["minmax", "rank", "none"])
def test_noise_amplitude_matches_numpy(normalize, direction):
  rng = np.random.default_rng(3)
  theta = rng.normal(size=(9, 4)).astype(np.float32)
  imp = np.abs(rng.normal(size=(9, 4))).astype(np.float32)
  imp[0, :2] = imp[1, 1]  # ties
  a = pats_jax.noise_amplitude(
    {"w": jnp.asarray(theta)},
    {"w": jnp.asarray(imp)},
    noise_scale=0.5,
    normalize=normalize,
    direction=direction,
  )
  r = np_normalize(imp.astype(np.float64), normalize)
  expected = 0.5 * np.std(theta.astype(np.float64)) * (r if direction == "inverse" else 1 - r)
  np.testing.assert_allclose(a["w"], expected, rtol=1e-5, atol=1e-7)
  assert a["w"].shape == theta.shape


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_rank_of_signed_zero_ties_and_infinities_matches_numpy(dtype):
  """`_order_key` orders like the floats, so ranks match NumPy's sort on any sign."""
  values = np.array([3.0, -0.0, 0.0, -2.5, np.inf, -np.inf, 1e-30, -1e-30, 3.0, -2.5, 0.5])
  values = np.concatenate([values, np.random.default_rng(0).normal(size=200)])
  x = jnp.asarray(values, dtype)
  exact = np.asarray(x.astype(jnp.float32), np.float64)  # the values after rounding
  got = np.asarray(_steps.normalize(x.astype(jnp.float32), "rank"), np.float64)
  n = exact.size - 1
  np.testing.assert_array_equal(np.rint(got * n), np.rint(np_normalize(exact, "rank") * n))
  key_order = np.argsort(np.asarray(_steps._order_key(x)), kind="stable")
  assert np.all(np.diff(exact[key_order]) >= 0)


@pytest.mark.parametrize("normalize", ["minmax", "rank"])
def test_constant_importance_gives_r_zero(normalize):
  """No information (max I = min I): r = 0, so a = λ·std(θ) everywhere."""
  theta = jnp.asarray(np.random.default_rng(0).normal(size=(5, 5)), jnp.float32)
  for value in (0.0, 2.5):
    a = pats_jax.noise_amplitude(
      theta, jnp.full((5, 5), value), noise_scale=0.1, normalize=normalize
    )
    np.testing.assert_allclose(a, 0.1 * np.std(np.asarray(theta, np.float64)), rtol=1e-6)
    inv = pats_jax.noise_amplitude(
      theta, jnp.full((5, 5), value), noise_scale=0.1, normalize=normalize, direction="inverse"
    )
    np.testing.assert_array_equal(inv, 0.0)


def correctly_rounded_f32(numerator, denominator):
  """`numerator/denominator` rounded to the nearest float32 (ties to even), exactly."""
  exact = fractions.Fraction(numerator, denominator)
  guess = np.float32(float(exact))
  candidates = [np.nextafter(guess, np.float32(-1)), guess, np.nextafter(guess, np.float32(2))]
  distance = lambda c: (abs(fractions.Fraction(float(c)) - exact), int(c.view(np.uint32)) & 1)
  return min(candidates, key=distance)


@pytest.mark.parametrize(
  "kind", ["large_mean_small_spread", "weights", "constant", "bfloat16", "stacked", "far_first"]
)
def test_one_pass_std_is_the_two_pass_std(kind):
  """`leaf_std` sums `θ − θ_first` and its square in one pass; it gives the float64 std up to
  float32 rounding where the unshifted `Σθ²/n − (Σθ/n)²` cancels (a mean 10⁶ spreads wide),
  per layer of a stacked leaf too. Its error grows as `((μ − θ_first)/σ)²·ε`: with the first
  element a far outlier the documented bound is the one checked."""
  rng = np.random.default_rng(0)
  axis, rtol = None, 1e-6
  x = {
    "large_mean_small_spread": 1e4 + 1e-2 * rng.normal(size=(256, 128)),
    "weights": 0.02 * rng.normal(size=(768, 96)),
    "constant": np.full((64, 32), 3.3),
    "bfloat16": 5.0 + rng.normal(size=(64, 32)),
    "stacked": rng.normal(size=(4, 64, 32)) * [[[1]], [[2]], [[3]], [[4]]]
    + [[[0]], [[1e3]], [[-7]], [[1e5]]],
    "far_first": np.concatenate([[1e3], 1e-3 * rng.normal(size=4095)]).reshape(64, 64),
  }[kind]
  dtype = jnp.bfloat16 if kind == "bfloat16" else jnp.float32
  x = jnp.asarray(x, dtype)
  if kind == "stacked":
    axis = 0
  if kind == "far_first":  # ((μ − c)/σ)² = n − 1 here
    rtol = 4 * x.size * 2.0**-24
  reduced = tuple(d for d in range(x.ndim) if d != axis)
  expected = np.std(np.asarray(x, np.float64), axis=reduced, keepdims=True)
  got = jax.jit(_steps.leaf_std, static_argnums=1)(x, axis)
  assert got.dtype == jnp.float32 and got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


def test_min_max_of_rounded_values_comes_from_the_unrounded_ones():
  """Rounding to bfloat16 keeps order, so `stored_min_max` (reducing float32 values) equals
  the min/max of the stored bfloat16 values, bit for bit, per layer too."""
  rng = np.random.default_rng(1)
  x = rng.lognormal(size=(3, 40, 50)).astype(np.float32)
  x[0, 0, :4] = [1.00390625, 1.0078125 - 2**-24, np.inf, 0.0]  # ties at rounding boundaries
  x[1] = np.float32(1 + 2**-9)  # all round to one value
  for axis in (None, 0):
    got = _steps.stored_min_max(jnp.asarray(x), jnp.bfloat16, axis)
    stored = jnp.asarray(x).astype(jnp.bfloat16).astype(jnp.float32)
    for g, e in zip(got, _steps.min_max(stored, axis), strict=True):
      np.testing.assert_array_equal(g, e)


def _reduced_operand_dtypes(jaxpr, primitives=("reduce_min", "reduce_max")):
  """The dtypes that values had before any convert_element_type feeding `primitives`."""
  found, producers = [], {}
  for eqn in jaxpr.eqns:
    for out in eqn.outvars:
      producers[out] = eqn
    if eqn.primitive.name in primitives:
      source = producers.get(eqn.invars[0])
      while source is not None and source.primitive.name == "convert_element_type":
        found.append(source.invars[0].aval.dtype)
        source = producers.get(source.invars[0])
      found.append(eqn.invars[0].aval.dtype)
    for param in eqn.params.values():
      for sub in param if isinstance(param, tuple | list) else (param,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _reduced_operand_dtypes(inner, primitives)
  return found


def test_bfloat16_emas_give_float32_min_max_reductions():
  """With `ema_dtype=bfloat16`, min I and max I reduce the float32 EMA before it is rounded
  (XLA fuses those with the EMA update; bfloat16 reductions of the stored EMA ran as separate
  kernels), and the updates are those of the rounded EMA."""
  params = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(16, 8)), jnp.float32)}
  grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
  opt = pats_jax.pats(optax.sgd(0.1), noise_scale=0.3, key=4, ema_dtype=jnp.bfloat16)
  state = opt.init(params)
  jaxpr = jax.make_jaxpr(opt.update)(grads, state, params).jaxpr
  dtypes = _reduced_operand_dtypes(jaxpr)
  assert dtypes and all(d == jnp.float32 for d in dtypes), dtypes
  updates, new_state = jax.jit(opt.update)(grads, state, params)
  eps = _steps.draw_noise(jax.random.split(state.key)[1], {"w": 1.0}, params, "uniform")
  amps = pats_jax.noise_amplitude(params, new_state.sensitivity, noise_scale=0.3)
  expected = -0.1 * grads["w"] + amps["w"] * eps["w"]  # up to float32 rounding order
  np.testing.assert_allclose(updates["w"], expected, rtol=0, atol=1e-7)


def test_minmax_r_is_exact_at_the_extremes():
  """`r = 0` at min I and exactly 1 at max I, within [0, 1] in between: spans whose rounded
  reciprocal times the span is not 1 (XLA divides by a per-matrix value that way)."""
  spans = np.random.default_rng(0).uniform(0.5, 2.0, 5000).astype(np.float32)
  spans = spans[spans * (np.float32(1) / spans) != 1][:50]
  assert spans.size == 50
  lo = np.float32(0.25)
  rows = np.stack([lo + spans * f for f in (0.0, 1.0, 0.3, 0.7, 0.999)], axis=1).astype(np.float32)
  r = np.asarray(jax.jit(jax.vmap(lambda x: _steps.normalize(x, "minmax")))(jnp.asarray(rows)))
  assert np.all(r[:, 0] == 0) and np.all(r[:, 1] == 1)
  assert np.all((r >= 0) & (r <= 1))
  span = (rows[:, 1] - rows[:, 0])[:, None]
  np.testing.assert_allclose(r, (rows - rows[:, :1]) / span, rtol=0, atol=2**-23)


@pytest.mark.parametrize(
  "values, expected",
  [
    ([0.0, 1e-40, 5e-41], [0.0, 0.0, 0.0]),  # a subnormal span: 1/span overflows
    ([1.0, np.inf, 2.0, 1.0], [0.0, 1.0, 0.0, 0.0]),  # an infinite span: 0·inf
    ([0.0, np.nan, 1.0], [0.0, 0.0, 0.0]),  # no information
  ],
  ids=["subnormal_span", "infinite_importance", "nan_importance"],
)
def test_minmax_r_has_no_nan(values, expected):
  imp = jnp.asarray(values, jnp.float32)
  r = jax.jit(lambda x: _steps.normalize(x, "minmax"))(imp)
  np.testing.assert_array_equal(r, expected)
  a = pats_jax.noise_amplitude(
    jnp.asarray([[1.0, -1.0, 2.0, 0.5][: imp.size]]), imp[None], noise_scale=0.1
  )
  assert np.all(np.isfinite(a)) and np.all(np.asarray(a) >= 0)


@pytest.mark.parametrize("m", [1000, 2**24 - 1, 2**24 + 1, 2**24 + 2, 3 * 2**25 + 7, 2**31 - 1])
def test_integer_ratio_is_correctly_rounded(m):
  """`k/m` rounded once, also where `k` and `m` are not float32 numbers (above 2^24):
  ranks 2^24 and 2^24 + 1 stay apart, the result never decreases, 0 and 1 are exact."""
  rng = np.random.default_rng(m % 1000)
  ks = np.concatenate([[0, 1, m - 1, m], 2**24 + np.arange(-4, 5), rng.integers(0, m + 1, 400)])
  ks = np.unique(ks[(ks >= 0) & (ks <= m)]).astype(np.int32)
  r = np.asarray(jax.jit(_steps.integer_ratio, static_argnums=(1, 2))(ks, m, jnp.float32))
  expected = np.array([correctly_rounded_f32(int(k), m) for k in ks], np.float32)
  np.testing.assert_array_equal(r, expected)
  assert np.all(np.diff(r) >= 0) and r[0] == 0 and r[-1] == 1


def test_rank_r_is_the_rank_over_size_minus_one_rounded_once():
  """Step 4's "rank" divides the integer rank (exact NumPy reference: size − 1 <= 2^24)."""
  imp = np.random.default_rng(5).permutation(1001).astype(np.float32) * 0.01
  r = np.asarray(jax.jit(lambda x: _steps.normalize(x, "rank"))(jnp.asarray(imp)))
  ranks = np.argsort(np.argsort(imp))
  np.testing.assert_array_equal(r, (ranks / 1000).astype(np.float32))


def test_first_step_state_and_constant_leaf():
  """Step 1 of a leaf whose gradient is zero: ŝ = 0, so the whole leaf gets a = λ·std."""
  params = make_params()
  grads = jax.tree.map(jnp.zeros_like, params)
  opt = pats_jax.pats(optax.set_to_zero(), noise_scale=1.0, key=0)
  state = opt.init(params)
  eps = reference_eps(state.key, [get(params, p).shape for p in SELECTED])
  updates, state = opt.update(grads, state, params)
  np.testing.assert_array_equal(state.sensitivity["emb"], 0.0)
  np.testing.assert_allclose(updates["emb"], np.std(np.asarray(params["emb"])) * eps[1], rtol=1e-6)


def test_uniform_noise_bounds_and_sensitive_parameters_get_less():
  """|n| <= a/2 for uniform noise; the most sensitive element (r = 1) gets none."""
  rng = np.random.default_rng(5)
  params = {"w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32)}
  grads = {"w": jnp.asarray(rng.normal(size=(64, 64)), jnp.float32)}
  opt = pats_jax.pats(optax.set_to_zero(), noise_scale=0.1, key=3)
  state = opt.init(params)
  updates, state = opt.update(grads, state, params)
  a = pats_jax.noise_amplitude(params, state.sensitivity, noise_scale=0.1)["w"]
  n = np.asarray(updates["w"])
  assert np.all(np.abs(n) <= np.asarray(a) / 2)
  top = np.unravel_index(np.argmax(np.asarray(state.sensitivity["w"])), (64, 64))
  assert n[top] == 0.0
  assert np.abs(n).max() > 0.4 * float(a.max())  # the bound is reached, not just respected
  # Spread of ε = n / a over the elements with a > 0: uniform on (-1/2, 1/2).
  pos = np.asarray(a) > 0
  e = n[pos] / np.asarray(a)[pos]
  assert abs(e.mean()) < 0.02 and abs(e.std() - np.sqrt(1 / 12)) < 0.01


def test_gaussian_noise_is_standard_normal_times_a():
  rng = np.random.default_rng(6)
  params = {"w": jnp.asarray(rng.normal(size=(128, 64)), jnp.float32)}
  opt = pats_jax.pats(
    optax.set_to_zero(), noise_scale=0.1, key=4, normalize="none", distribution="gaussian"
  )
  state = opt.init(params)
  updates, _ = opt.update(params, state, params)
  e = np.asarray(updates["w"]) / (0.1 * np.std(np.asarray(params["w"], np.float64)))
  assert abs(e.mean()) < 0.03 and abs(e.std() - 1) < 0.03
  assert np.abs(e).max() > 2.5  # not bounded like the uniform


def test_direction_inverse_noises_sensitive_parameters():
  rng = np.random.default_rng(7)
  params = {"w": jnp.asarray(rng.normal(size=(32, 32)), jnp.float32)}
  grads = {"w": jnp.asarray(rng.normal(size=(32, 32)), jnp.float32)}
  out = {}
  for direction in ("normal", "inverse"):
    opt = pats_jax.pats(optax.set_to_zero(), noise_scale=0.1, key=3, direction=direction)
    updates, state = opt.update(grads, opt.init(params), params)
    out[direction] = np.abs(np.asarray(updates["w"]))
  s = np.asarray(state.sensitivity["w"]).ravel()
  hi, lo = s > np.quantile(s, 0.9), s < np.quantile(s, 0.1)
  assert out["normal"].ravel()[hi].mean() < out["normal"].ravel()[lo].mean()
  assert out["inverse"].ravel()[hi].mean() > out["inverse"].ravel()[lo].mean()


@pytest.mark.parametrize("shape", [(), (7,), (3, 5), (4, 3, 6), (300, 17)])
def test_fused_threefry_is_jax_random(shape):
  """Step 6's ε comes from `_threefry` (fusible): bit for bit `jax.random`'s values."""
  for seed in (0, 12345):
    key = jax.random.key(seed)
    assert _threefry.supported(key, shape, jnp.float32)
    np.testing.assert_array_equal(
      jax.jit(lambda k: _threefry.uniform(k, shape, -0.5, 0.5))(key),
      jax.random.uniform(key, shape, jnp.float32, -0.5, 0.5),
    )
    np.testing.assert_array_equal(
      jax.jit(lambda k: _threefry.normal(k, shape))(key),
      jax.random.normal(key, shape, jnp.float32),
    )


def test_other_key_implementations_use_jax_random():
  key = jax.random.key(0, impl="rbg")
  assert not _threefry.supported(key, (3,), jnp.float32)
  assert not _threefry.supported(jax.random.key(0), (3,), jnp.float64)
  params = make_params()
  opt = pats_jax.pats(optax.set_to_zero(), noise_scale=0.2, key=key, normalize="none")
  state = opt.init(params)
  eps = reference_eps(state.key, [get(params, p).shape for p in SELECTED])
  updates, _ = opt.update(make_grads(params, 0), state, params)
  for j, p in enumerate(SELECTED):
    a = 0.2 * np.std(np.asarray(get(params, p), np.float64))
    np.testing.assert_allclose(get(updates, p), a * eps[j], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg", "unsafe_rbg"])
@pytest.mark.parametrize("distribution", ["uniform", "gaussian"])
def test_noise_of_every_key_implementation_is_iid(impl, distribution):
  """Step 6's ε, drawn as `pats` draws it (a key split per step, one key per leaf), follows
  its distribution (Kolmogorov-Smirnov) and is uncorrelated between leaves, between steps
  and between neighbouring elements. This checks the generator of the backend at hand (the
  CPU's here); the seeds are fixed, so the test is deterministic."""
  from scipy import stats

  shape = (256, 256)
  thetas = {"a": jnp.zeros(shape), "b": jnp.zeros(shape)}
  amps = jax.tree.map(jnp.ones_like, thetas)
  key, draws = jax.random.key(7, impl=impl), []
  for _ in range(2):  # Two steps, as `pats` splits its state's key.
    key, noise_key = jax.random.split(key)
    eps = _steps.draw_noise(noise_key, amps, thetas, distribution)
    draws += [np.asarray(eps["a"], np.float64).ravel(), np.asarray(eps["b"], np.float64).ravel()]
  reference = ("uniform", (-0.5, 1.0)) if distribution == "uniform" else ("norm", ())
  bound = 5 / np.sqrt(draws[0].size)  # Five standard errors of a correlation of i.i.d. values.
  for x in draws:
    assert stats.kstest(x, reference[0], args=reference[1]).pvalue > 1e-3
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < bound  # Neighbours.
  for i in range(len(draws)):
    for j in range(i):
      assert abs(np.corrcoef(draws[i], draws[j])[0, 1]) < bound  # Leaves and steps.


# --- stacked layers: per-matrix statistics along layer_axis ---------------------------------

L, M, N = 3, 6, 5


def stacked_and_separate(axis):
  """The same L matrices as one leaf stacked along `axis` and as L separate leaves."""
  rng = np.random.default_rng(8)
  mats = [jnp.asarray(rng.normal(size=(M, N)) * (i + 1), jnp.float32) for i in range(L)]
  separate = {"layers": {str(i): m for i, m in enumerate(mats)}, "bias": jnp.ones(N)}
  stacked = {"layers": jnp.stack(mats, axis=axis), "bias": jnp.ones(N)}
  return stacked, separate


def unstack(tree, axis):
  return {str(i): jnp.take(tree, i, axis=axis) for i in range(L)}


@pytest.mark.parametrize("normalize", ["minmax", "rank", "none"])
@pytest.mark.parametrize(
  "layer_axis",
  [0, -3, {"layers": 0, "bias": None}, lambda p: {"layers": 0, "bias": None}, 1],
  ids=["int", "negative", "prefix", "callable", "middle_axis"],
)
def test_stacked_leaf_gets_the_statistics_of_its_layers(normalize, layer_axis):
  axis = 1 if layer_axis == 1 else 0
  stacked, separate = stacked_and_separate(axis)
  kw = {"noise_scale": 0.2, "beta2": 0.9, "normalize": normalize}
  opt_s = pats_jax.pats(optax.set_to_zero(), key=2, layer_axis=layer_axis, **kw)
  opt_l = pats_jax.pats(optax.set_to_zero(), key=2, **kw)
  state_s, state_l = opt_s.init(stacked), opt_l.init(separate)
  update_s = jax.jit(opt_s.update)
  rng = np.random.default_rng(9)
  for _ in range(3):
    grads_s = {"layers": jnp.asarray(rng.normal(size=stacked["layers"].shape), jnp.float32)}
    grads_s["bias"] = jnp.ones(N)
    grads_l = {"layers": unstack(grads_s["layers"], axis), "bias": grads_s["bias"]}
    eps = reference_eps(state_s.key, [stacked["layers"].shape])[0]
    updates_s, state_s = update_s(grads_s, state_s, stacked)
    _, state_l = opt_l.update(grads_l, state_l, separate)
    # The noise: the stacked leaf's own ε times the per-layer amplitude.
    amp = pats_jax.noise_amplitude(
      stacked,
      _pats._importance(state_s.sensitivity, state_s.uncertainty),
      noise_scale=0.2,
      normalize=normalize,
      layer_axis=layer_axis,
    )
    chex.assert_trees_all_close(updates_s["layers"], amp["layers"] * eps, rtol=1e-5, atol=1e-7)
  # EMAs, amplitudes and logged statistics: those of the L separate matrices.
  chex.assert_trees_all_close(
    unstack(state_s.sensitivity["layers"], axis), state_l.sensitivity["layers"]
  )
  imp_l = _pats._importance(state_l.sensitivity, state_l.uncertainty)
  amp_l = pats_jax.noise_amplitude(separate, imp_l, noise_scale=0.2, normalize=normalize)
  chex.assert_trees_all_close(unstack(amp["layers"], axis), amp_l["layers"], rtol=1e-5, atol=1e-7)
  chex.assert_shape(amp["layers"], stacked["layers"].shape)
  stats_s = pats_jax.pats_statistics(
    stacked, state_s, noise_scale=0.2, normalize=normalize, layer_axis=layer_axis
  )
  stats_l = pats_jax.pats_statistics(separate, state_l, noise_scale=0.2, normalize=normalize)
  chex.assert_trees_all_close(stats_s, stats_l, rtol=1e-5)
  # Without layer_axis the stacked leaf is one matrix: other amplitudes (the test can fail).
  whole = pats_jax.noise_amplitude(
    stacked, state_s.sensitivity, noise_scale=0.2, normalize=normalize
  )
  assert not np.allclose(whole["layers"], amp["layers"], rtol=1e-3)


def test_noisytune_and_pats_adamw_take_layer_axis():
  stacked, _ = stacked_and_separate(0)
  new = pats_jax.noisytune(
    stacked, 0, scale=0.3, mask={"layers": True, "bias": False}, layer_axis=0
  )
  stds = np.std(np.asarray(stacked["layers"], np.float64), axis=(1, 2))
  delta = np.abs(np.asarray(new["layers"] - stacked["layers"]))
  for i in range(L):
    assert delta[i].max() <= 0.3 * stds[i] / 2 * (1 + 1e-5) and delta[i].max() > 0.3 * stds[i] / 4
  a = pats_jax.pats_adamw(1e-2, noise_scale=0.1, key=0, layer_axis=0)
  b = pats_jax.pats(pats_jax.adamw(1e-2), noise_scale=0.1, key=0, layer_axis=0)
  grads = jax.tree.map(jnp.sin, stacked)
  chex.assert_trees_all_equal(
    a.update(grads, a.init(stacked), stacked)[0], b.update(grads, b.init(stacked), stacked)[0]
  )


@pytest.mark.parametrize(
  ("layer_axis", "error", "match"),
  [
    (3, ValueError, r"layer_axis=3 is out of range for the leaf at \['layers'\] of shape"),
    ({"layers": 0}, ValueError, r"layer_axis must be a pytree of ints or None with the structure"),
    ("0", TypeError, r"layer_axis must hold ints or None"),
    (jnp.asarray(0), TypeError, r"name it in static_args"),
  ],
)
def test_bad_layer_axis_is_named(layer_axis, error, match):
  stacked, _ = stacked_and_separate(0)
  opt = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, layer_axis=layer_axis)
  with pytest.raises(error, match=match):
    opt.init(stacked)


# --- one pass: the statistics of the previous update --------------------------------------


def np_previous_step(theta, g, s_hat, u_hat, previous, *, lam, beta2, normalize, direction):
  """Steps 1-5 for one leaf with `statistics="previous"`: r and a from `previous`, the
  `(min I, max I, std θ)` that the update before took of its inputs. Returns the new EMAs,
  this update's statistics (of the importance it read and of θ) and a."""
  read = s_hat if beta2 is None else s_hat * u_hat
  s_hat, u_hat, imp = np_importance(theta, g, s_hat, u_hat, beta2=beta2)
  lo, hi, std = previous
  if normalize == "none" or hi == lo:
    r = np.zeros_like(imp)
  else:
    r = np.clip((imp - lo) / (hi - lo), 0, 1)
  a = lam * std * (r if direction == "inverse" else 1 - r)
  return s_hat, u_hat, (read.min(), read.max(), np.std(theta)), a


class PreviousStatisticsTest(chex.TestCase):
  """`statistics="previous"` against the NumPy reference, with and without `jax.jit`."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
    ("minmax", "normal", None),
    ("minmax", "inverse", None),
    ("minmax", "normal", 0.9),
    ("none", "normal", None),
  )
  def test_noise_uses_the_statistics_of_the_update_before(self, normalize, direction, beta2):
    params = make_params()
    kw = {"noise_scale": 0.2, "beta2": beta2, "normalize": normalize, "direction": direction}
    opt = pats_jax.pats(optax.set_to_zero(), key=3, statistics="previous", **kw)
    state = opt.init(params)
    update = self.variant(opt.update)
    ref = {}
    for p in SELECTED:  # before the first update: I = 0, θ' = the params given to init
      theta = np.asarray(get(params, p), np.float64)
      ref[p] = [np.zeros(theta.shape), np.zeros(theta.shape), (0.0, 0.0, np.std(theta))]
    for t in range(4):
      grads = make_grads(params, seed=30 + t)
      eps = reference_eps(state.key, [get(params, p).shape for p in SELECTED])
      updates, state = update(grads, state, params)
      for j, p in enumerate(SELECTED):
        s_hat, u_hat, stats, a = np_previous_step(
          np.asarray(get(params, p), np.float64),
          np.asarray(get(grads, p), np.float64),
          *ref[p],
          lam=0.2,
          beta2=beta2,
          normalize=normalize,
          direction=direction,
        )
        ref[p] = [s_hat, u_hat, stats]
        chex.assert_trees_all_close(get(updates, p), a * eps[j], rtol=1e-5, atol=1e-7)
        kept = state.statistics
        np.testing.assert_allclose(get(kept.theta_std, p).ravel(), [stats[2]], rtol=1e-5)
        if normalize == "minmax":
          np.testing.assert_allclose(get(kept.importance_min, p).ravel(), [stats[0]], rtol=1e-5)
          np.testing.assert_allclose(get(kept.importance_max, p).ravel(), [stats[1]], rtol=1e-5)
        else:
          assert kept.importance_min is None and kept.importance_max is None
      params = optax.apply_updates(params, updates)  # θ moves: std θ' lags by one update
    assert state.statistics.theta_std["dense"]["bias"] == optax.MaskedNode()

  def test_first_two_updates_are_sensitivity_blind_then_differ_from_current(self):
    """Updates 1 and 2 have `r = 0` everywhere: their bounds are those of the zero EMA that
    update 1 read, so `a = λ·std(θ)` on every element. Update 3 differs from
    `statistics="current"`, whose r uses this step's bounds."""
    params = make_params()
    kw = {"noise_scale": 0.2, "key": 5}
    previous = pats_jax.pats(optax.set_to_zero(), statistics="previous", **kw)
    current = pats_jax.pats(optax.set_to_zero(), **kw)
    state_p, state_c = previous.init(params), current.init(params)
    for seed in (1, 2):
      grads = make_grads(params, seed=seed)
      eps = reference_eps(state_p.key, [get(params, p).shape for p in SELECTED])
      updates_p, state_p = previous.update(grads, state_p, params)
      updates_c, state_c = current.update(grads, state_c, params)
      for j, p in enumerate(SELECTED):
        blind = 0.2 * np.std(np.asarray(get(params, p))) * eps[j]
        np.testing.assert_allclose(get(updates_p, p), blind, rtol=1e-5, atol=1e-7)
        assert not np.allclose(get(updates_c, p), blind, rtol=1e-3)
      chex.assert_trees_all_close(state_p.sensitivity, state_c.sensitivity)  # same EMAs
    grads = make_grads(params, seed=3)
    updates_p, _ = previous.update(grads, state_p, params)
    updates_c, _ = current.update(grads, state_c, params)
    assert not np.allclose(updates_p["emb"], updates_c["emb"], rtol=1e-3)
    eps = reference_eps(state_p.key, [get(params, p).shape for p in SELECTED])[1]
    assert not np.allclose(updates_p["emb"], 0.2 * np.std(np.asarray(params["emb"])) * eps)


def test_previous_statistics_of_a_stacked_leaf_are_per_layer():
  stacked, _ = stacked_and_separate(0)
  opt = pats_jax.pats(
    optax.set_to_zero(), noise_scale=0.2, key=2, layer_axis=0, statistics="previous"
  )
  state = opt.init(stacked)
  layers = np.asarray(stacked["layers"], np.float64)
  np.testing.assert_allclose(
    state.statistics.theta_std["layers"].ravel(), layers.reshape(L, -1).std(axis=1), rtol=1e-5
  )
  rng = np.random.default_rng(4)
  grads = {"layers": jnp.asarray(rng.normal(size=layers.shape), jnp.float32), "bias": jnp.ones(N)}
  for _ in range(2):  # the bounds of update 3 are those of the EMA that update 1 wrote
    _, state = opt.update(grads, state, stacked)
    grads["layers"] = grads["layers"][::-1]
  read = np.asarray(state.sensitivity["layers"], np.float64)
  eps = reference_eps(state.key, [layers.shape])[0]
  updates, new_state = jax.jit(opt.update)(grads, state, stacked)
  lo, hi = state.statistics.importance_min["layers"], state.statistics.importance_max["layers"]
  chex.assert_shape([lo, hi], (L, 1, 1))
  assert np.all(np.asarray(hi) > np.asarray(lo))
  imp = np.asarray(new_state.sensitivity["layers"], np.float64)
  r = np.clip((imp - lo) / (hi - lo), 0, 1)
  a = 0.2 * np.asarray(state.statistics.theta_std["layers"]) * (1 - r)
  np.testing.assert_allclose(updates["layers"], a * eps, rtol=1e-5, atol=1e-7)
  for kept, fn in (
    (new_state.statistics.importance_min, np.min),
    (new_state.statistics.importance_max, np.max),
  ):
    np.testing.assert_allclose(kept["layers"].ravel(), fn(read.reshape(L, -1), axis=1))


def test_previous_statistics_of_bfloat16_emas_are_the_stored_values():
  params = {"w": jnp.asarray(np.random.default_rng(2).normal(size=(16, 8)), jnp.float32)}
  grads = jax.tree.map(lambda p: p * 0.5 + 0.1, params)
  opt = pats_jax.pats(
    optax.sgd(0.1), noise_scale=0.3, key=4, ema_dtype=jnp.bfloat16, statistics="previous"
  )
  _, state = jax.jit(opt.update)(grads, opt.init(params), params)
  stored = np.asarray(state.sensitivity["w"], np.float32)
  assert state.sensitivity["w"].dtype == jnp.bfloat16
  _, state = jax.jit(opt.update)(grads, state, params)  # reads `stored`
  assert state.statistics.importance_min["w"].dtype == jnp.float32
  assert float(state.statistics.importance_min["w"][0, 0]) == stored.min()
  assert float(state.statistics.importance_max["w"][0, 0]) == stored.max()


def test_previous_statistics_refusals_name_the_option():
  with pytest.raises(ValueError, match="statistics must be one of 'current', 'previous'"):
    pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, statistics="last")
  with pytest.raises(ValueError, match="statistics='previous' needs normalize='minmax' or"):
    pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, statistics="previous", normalize="rank")
  params = make_params()
  current_state = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0).init(params)
  previous = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, statistics="previous")
  with pytest.raises(ValueError, match=r"state\.statistics lacks what"):
    previous.update(make_grads(params, 0), current_state, params)


# --- mask -------------------------------------------------------------------------------


@pytest.mark.parametrize(
  "mask",
  [
    None,
    {"dense": {"kernel": True, "bias": False}, "emb": True},
    {"dense": True, "emb": False},
    lambda p: jax.tree.map(lambda x: x.shape[0] == 6, p),
  ],
  ids=["default", "tree", "prefix", "callable"],
)
def test_mask_no_noise_and_no_state(mask):
  params = make_params()
  selected = jax.tree.leaves(_masks.resolve_mask(mask, params))
  inner = optax.adam(1e-2)
  opt = pats_jax.pats(inner, noise_scale=0.5, key=0, beta2=0.9, mask=mask)
  state = opt.init(params)
  grads = make_grads(params, 1)
  updates, new_state = opt.update(grads, state, params)
  ref_updates, _ = inner.update(grads, inner.init(params), params)
  for sel, u, r, s_hat, u_hat in zip(
    selected,
    jax.tree.leaves(updates),
    jax.tree.leaves(ref_updates),
    jax.tree.leaves(new_state.sensitivity, is_leaf=lambda x: x == optax.MaskedNode()),
    jax.tree.leaves(new_state.uncertainty, is_leaf=lambda x: x == optax.MaskedNode()),
    strict=True,
  ):
    if sel:
      assert not np.array_equal(u, r) and s_hat.shape == u.shape and u_hat.shape == u.shape
    else:
      np.testing.assert_array_equal(u, r)
      assert s_hat == optax.MaskedNode() and u_hat == optax.MaskedNode()
  # The state holds full-size buffers only for the selected leaves.
  sizes = [x.size for x in jax.tree.leaves(new_state.sensitivity)]
  assert sorted(sizes) == sorted(
    x.size for x, s in zip(jax.tree.leaves(params), selected, strict=True) if s
  )


FROZEN_LABELS = {"dense": {"kernel": "train", "bias": "train"}, "emb": "frozen"}
FROZEN = {"dense": False, "emb": True}


@pytest.mark.parametrize(
  "inner, mask",
  [
    (
      optax.multi_transform(
        {"train": optax.adam(1e-2), "frozen": optax.set_to_zero()}, FROZEN_LABELS
      ),
      pats_jax.unfrozen_mask(FROZEN_LABELS, frozen_labels="frozen"),
    ),
    (
      optax.multi_transform(
        {"train": optax.adam(1e-2), "frozen": optax.set_to_zero()}, lambda p: FROZEN_LABELS
      ),
      pats_jax.unfrozen_mask(lambda p: FROZEN_LABELS, frozen_labels=["frozen", "unused"]),
    ),
    (
      optax.chain(optax.adam(1e-2), optax.masked(optax.set_to_zero(), FROZEN)),
      pats_jax.unfrozen_mask(FROZEN),
    ),
  ],
  ids=["multi_transform", "labels_callable", "masked"],
)
def test_unfrozen_mask_keeps_frozen_leaves_fixed(inner, mask):
  """With `unfrozen_mask` built from the freezing's labels or mask, a frozen leaf's update is
  exactly zero at every step; the default mask would move it by the noise."""
  params = make_params()
  for noise_mask, frozen_moves in ((mask, False), (None, True)):
    opt = pats_jax.pats(inner, noise_scale=0.5, key=0, mask=noise_mask)
    state, p = opt.init(params), params
    for t in range(3):
      updates, state = jax.jit(opt.update)(make_grads(params, t), state, p)
      p = optax.apply_updates(p, updates)
      assert bool(jnp.any(updates["emb"] != 0)) == frozen_moves
    if not frozen_moves:
      np.testing.assert_array_equal(p["emb"], params["emb"])
      assert state.sensitivity["emb"] == optax.MaskedNode()
      inner_updates, _ = inner.update(make_grads(params, 0), inner.init(params), params)
      first, _ = opt.update(make_grads(params, 0), opt.init(params), params)
      assert not np.array_equal(first["dense"]["kernel"], inner_updates["dense"]["kernel"])
      np.testing.assert_array_equal(first["dense"]["bias"], inner_updates["dense"]["bias"])


def test_unfrozen_mask_base_and_bad_frozen():
  params = make_params()
  mask = pats_jax.unfrozen_mask(FROZEN, base=pats_jax.all_leaves_mask)
  assert mask(params) == {"dense": {"kernel": True, "bias": True}, "emb": False}
  assert pats_jax.unfrozen_mask({"emb": True, "dense": {"kernel": True, "bias": False}})(
    params
  ) == {"dense": {"kernel": False, "bias": False}, "emb": False}
  with pytest.raises(ValueError, match="frozen must be a pytree of labels"):
    pats_jax.unfrozen_mask({"dense": "x"}, frozen_labels="frozen")(params)
  with pytest.raises(TypeError, match="pytree of bools"):
    pats_jax.unfrozen_mask({"dense": "x", "emb": True})(params)


def test_default_mask_is_weight_matrices():
  params = {
    "embeddings": {
      "word": jnp.ones((10, 4)),
      "LayerNorm": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    },
    "attention": {"query": {"kernel": jnp.ones((4, 2, 2)), "bias": jnp.ones((2, 2))}},
    "ln_f": {"scale": jnp.ones((1, 4))},
    "final_norm": {"weight": jnp.ones((2, 4))},
  }
  assert pats_jax.weight_matrix_mask(params) == {
    "embeddings": {"word": True, "LayerNorm": {"scale": False, "bias": False}},
    "attention": {"query": {"kernel": True, "bias": False}},
    "ln_f": {"scale": False},
    "final_norm": {"weight": False},
  }


# --- analysis helpers -------------------------------------------------------------------


def test_statistics_match_numpy_and_find_state():
  params = make_params()
  opt = optax.chain(
    optax.clip_by_global_norm(1.0),
    pats_jax.pats(optax.adam(1e-3), noise_scale=0.3, key=0, beta2=0.8),
  )
  state = opt.init(params)
  for t in range(3):
    _, state = opt.update(make_grads(params, t), state, params)
  ps = pats_jax.find_pats_state(state)
  assert isinstance(ps, pats_jax.PatsState) and int(ps.count) == 3
  stats = jax.jit(lambda p, s: pats_jax.pats_statistics(p, s, noise_scale=0.3))(params, state)
  rs, aa, ss, uu = [], [], [], []
  for p in SELECTED:
    s_hat, u_hat = np.asarray(get(ps.sensitivity, p)), np.asarray(get(ps.uncertainty, p))
    r = np_normalize(s_hat.astype(np.float64) * u_hat, "minmax")
    rs.append(r.ravel())
    aa.append((0.3 * np.std(np.asarray(get(params, p), np.float64)) * (1 - r)).ravel())
    ss.append(s_hat.ravel())
    uu.append(u_hat.ravel())
  rs, aa, ss, uu = map(np.concatenate, (rs, aa, ss, uu))
  np.testing.assert_allclose(stats["r_mean"], rs.mean(), rtol=1e-5)
  np.testing.assert_allclose(stats["amplitude_mean"], aa.mean(), rtol=1e-5)
  np.testing.assert_allclose(stats["r_below_0.1"], (rs < 0.1).mean(), rtol=1e-6)
  np.testing.assert_allclose(stats["sensitivity_mean"], ss.mean(), rtol=1e-5)
  np.testing.assert_allclose(stats["uncertainty_mean"], uu.mean(), rtol=1e-5)
  assert float(stats["selected"]) == rs.size and float(stats["noise_scale"]) == pytest.approx(0.3)
  assert pats_jax.find_pats_state(optax.adam(1e-3).init(params)) is None
  with pytest.raises(ValueError, match="no PatsState"):
    pats_jax.pats_statistics(params, optax.adam(1e-3).init(params), noise_scale=0.1)
  two = optax.chain(
    pats_jax.pats(optax.sgd(1.0), noise_scale=0.1, key=0),
    pats_jax.pats(optax.sgd(1.0), noise_scale=0.1, key=1),
  )
  with pytest.raises(ValueError, match="2 PatsStates"):
    pats_jax.find_pats_state(two.init(params))


@pytest.mark.parametrize("statistics", ["current", "previous"])
def test_pats_adamw_is_pats_around_decay_masked_adamw(statistics):
  params = make_params()
  kw = {"noise_scale": 0.1, "key": 0, "beta2": 0.9, "statistics": statistics}
  a = pats_jax.pats_adamw(1e-2, weight_decay=0.1, **kw)
  b = pats_jax.pats(pats_jax.adamw(1e-2, weight_decay=0.1), **kw)
  sa, sb = a.init(params), b.init(params)
  assert (sa.statistics is None) == (statistics == "current")
  for t in range(2):
    grads = make_grads(params, t)
    ua, sa = a.update(grads, sa, params)
    ub, sb = b.update(grads, sb, params)
    jax.tree.map(np.testing.assert_array_equal, ua, ub)


def test_import_is_light():
  """`import pats_jax` does not import the models, data, metrics or training subpackages."""
  code = (
    "import sys, pats_jax; "
    "print([m for m in sys.modules if m.split('.')[:2] in "
    "[['pats_jax', s] for s in ('models', 'data', 'metrics', 'training')]])"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", [_pats, _sage, _noisytune, _masks, _adamw])
def test_docstring_examples(module):
  """The Examples in the docstrings run here, so no --doctest-modules flag is needed."""
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.attempted > 0 and result.failed == 0

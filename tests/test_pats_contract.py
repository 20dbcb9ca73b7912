"""The optax contract (extra args, no recompilation, convergence, wrappers) and bad input."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compile_log import compile_log

import pats_jax

ALL = lambda params: jax.tree.map(lambda _: True, params)  # noise on 1-D targets too


def parabola():
  return jnp.array([-1.0, 10.0, 1.0]), jnp.array([1.0, -1.0, 1.0])


def matrix_parabola():
  return jnp.zeros((2, 2)), jnp.array([[3.0, -2.0], [1.0, 4.0]])


def mixed():
  return (
    (jnp.zeros(3), jnp.zeros((2, 2))),
    (jnp.array([1.0, -1.0, 2.0]), jnp.array([[1.0, 0.0], [-1.0, 1.0]])),
  )


def sq_loss(target):
  return lambda p: sum(
    jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(target), strict=True)
  )


def rosenbrock(p):
  return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def make_opt(**kw):
  kw = {"noise_scale": 1e-3, "key": 0, "mask": ALL, **kw}
  inner = kw.pop("inner", optax.adam(1e-2))
  return pats_jax.pats(inner, **kw)


# --- update contract ----------------------------------------------------------------------


def test_extra_args_and_no_recompilation():
  opt = make_opt()
  params = jnp.zeros(2)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    grads = jax.grad(rosenbrock)(params)
    updates, state = opt.update(grads, state, params, unexpected_extra_arg=1, value=3.0)
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  with compile_log() as log:
    for _ in range(4):
      params, state = step(params, state)
  assert len([m for m in log if "step" in m]) == 1, log


@pytest.mark.parametrize("target", ["parabola", "matrix_parabola", "mixed", "rosenbrock"])
@pytest.mark.parametrize("normalize", ["minmax", "rank"])
def test_converges_with_small_noise(target, normalize):
  if target == "rosenbrock":
    init, final, loss = jnp.zeros(2), jnp.array([1.0, 1.0]), rosenbrock
  else:
    init, final = {"parabola": parabola, "matrix_parabola": matrix_parabola, "mixed": mixed}[
      target
    ]()
    loss = sq_loss(final)
  opt = make_opt(normalize=normalize, beta2=0.9)

  def body(carry, _):
    params, state = carry
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, state), _ = jax.jit(lambda c: jax.lax.scan(body, c, length=10_000))(
    (init, opt.init(init))
  )
  assert int(state.count) == 10_000
  chex.assert_trees_all_close(params, final, rtol=3e-2, atol=3e-2)


def test_inside_chain():
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
  grads = jax.tree.map(lambda x: 2.0 * x, params)
  opt = optax.chain(
    optax.clip_by_global_norm(1.0),
    pats_jax.pats(optax.scale_by_adam(), noise_scale=0.1, key=0),
    optax.scale(-1e-2),
  )
  updates, state = jax.jit(opt.update)(grads, opt.init(params), params)
  clipped, _ = optax.clip_by_global_norm(1.0).update(grads, None)
  alone = pats_jax.pats(optax.scale_by_adam(), noise_scale=0.1, key=0)
  expected, _ = alone.update(clipped, alone.init(params), params)
  chex.assert_trees_all_close(updates, jax.tree.map(lambda y: -1e-2 * y, expected), rtol=1e-6)
  assert pats_jax.find_pats_state(state).count == 1


def test_inject_hyperparams_noise_scale():
  params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(4, 5)), jnp.float32)}
  grads = jax.tree.map(jnp.sin, params)
  kw = {"inner": optax.adam(1e-2), "key": 0, "beta2": 0.9}
  plain = pats_jax.pats(noise_scale=0.1, **kw)
  injected = optax.inject_hyperparams(pats_jax.pats)(noise_scale=0.1, **kw)
  state, istate = plain.init(params), injected.init(params)
  update, iupdate = jax.jit(plain.update), jax.jit(injected.update)
  for _ in range(3):
    u, state = update(grads, state, params)
    iu, istate = iupdate(grads, istate, params)
    chex.assert_trees_all_close(u, iu, rtol=1e-6)
  chex.assert_trees_all_close(state.sensitivity, istate.inner_state.sensitivity, rtol=1e-6)
  assert float(istate.hyperparams["noise_scale"]) == pytest.approx(0.1)
  # Changing the injected value between steps changes the noise without recompiling: the
  # first call with each new value is logged; 0 gives exactly inner, 0.3 three times 0.1's noise.
  ref, _ = jax.jit(optax.adam(1e-2).update)(grads, istate.inner_state.inner_state, params)
  noise_01 = jax.tree.map(jnp.subtract, iupdate(grads, istate, params)[0], ref)
  zero, high = (jnp.asarray(x, jnp.float32) for x in (0.0, 0.3))  # the dtype init gave it
  with compile_log() as log:
    istate.hyperparams["noise_scale"] = zero
    iu0, _ = iupdate(grads, istate, params)
    istate.hyperparams["noise_scale"] = high
    iu3, _ = iupdate(grads, istate, params)
  assert not log, log
  chex.assert_trees_all_equal(iu0, ref)
  noise_03 = jax.tree.map(jnp.subtract, iu3, ref)
  chex.assert_trees_all_close(noise_03, jax.tree.map(lambda n: 3.0 * n, noise_01), atol=1e-6)
  assert float(jnp.max(jnp.abs(noise_01["w"]))) > 0
  # A schedule is injectable too; callables that are not schedules go in static_args.
  sched = optax.inject_hyperparams(pats_jax.pats, static_args=("mask", "ema_dtype"))(
    noise_scale=optax.linear_schedule(0.1, 0.0, 2),
    mask=lambda p: jax.tree.map(lambda _: True, p),
    ema_dtype=jnp.bfloat16,
    **kw,
  )
  sstate = sched.init(params)
  for _ in range(3):
    _, sstate = sched.update(grads, sstate, params)
  assert float(sstate.hyperparams["noise_scale"]) == 0.0
  chex.assert_type(sstate.inner_state.sensitivity["w"], jnp.bfloat16)
  named = optax.inject_hyperparams(pats_jax.pats)(noise_scale=0.1, ema_dtype="bfloat16", **kw)
  _, nstate = named.update(grads, named.init(params), params)
  chex.assert_type(nstate.inner_state.sensitivity["w"], jnp.bfloat16)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_multisteps_accumulates_then_steps(dtype):
  # Four micro-batches whose gradients differ in direction; their mean, 3·(b + o), is exact in
  # both dtypes (MultiSteps' running mean of these small dyadic values does not round).
  params = {"w": jnp.asarray([[1.0, -2.0, 0.5], [4.0, -1.0, 2.0]], dtype)}
  b = np.array([[1.0, 2.0, -1.0], [0.5, -0.25, 1.0]]) / 8
  o = np.array([[0.25, -1.0, 2.0], [1.0, 0.5, -0.5]]) / 8
  micro = [{"w": jnp.asarray(m * b + n * o, dtype)} for m, n in [(1, 2), (3, 6), (2, 4), (6, 0)]]
  mean = {"w": jnp.asarray(3 * (b + o), dtype)}
  make = lambda: pats_jax.pats(optax.sgd(1e-2), noise_scale=0.1, key=0, beta1=0.85)
  opt = optax.MultiSteps(make(), 4)
  state = jax.jit(opt.init)(params)
  update = jax.jit(opt.update)
  for k, grads in enumerate(micro):
    updates, state = update(grads, state, params)
    inner = pats_jax.find_pats_state(state)
    chex.assert_type(updates["w"], dtype)
    if k < 3:
      np.testing.assert_array_equal(updates["w"], 0)
      assert int(inner.count) == 0
  assert int(inner.count) == 1
  # PATS saw the mean gradient: its EMA is (1 − β1)·|θ ⊙ mean(g)| ...
  theta = np.asarray(params["w"], np.float64)
  ema = np.asarray(inner.sensitivity["w"], np.float64)
  rtol = 1e-6 if dtype == jnp.float32 else 1e-2
  np.testing.assert_allclose(ema, 0.15 * np.abs(theta * 3 * (b + o)), rtol=rtol)
  # ... its noise is bounded by the amplitude `noise_amplitude` gives from that EMA, ...
  amp = np.asarray(pats_jax.noise_amplitude(params, inner.sensitivity, noise_scale=0.1)["w"])
  noise = np.asarray(updates["w"], np.float64) + 1e-2 * np.asarray(mean["w"], np.float64)
  slack = 1e-6 if dtype == jnp.float32 else 2**-8 * np.max(np.abs(updates["w"]))
  assert np.all(np.abs(noise) <= amp / 2 + slack) and np.max(np.abs(noise)) > 0, (noise, amp)
  # ... and the step is exactly PATS's own step on the mean gradient with the same key.
  alone = make()
  expected, alone_state = jax.jit(alone.update)(mean, alone.init(params), params)
  chex.assert_trees_all_equal(updates, expected)
  chex.assert_trees_all_equal(inner.sensitivity, alone_state.sensitivity)
  chex.assert_trees_all_equal(jax.random.key_data(inner.key), jax.random.key_data(alone_state.key))


def test_apply_if_finite_skips_the_whole_step():
  params = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 4)), jnp.float32)}
  opt = optax.apply_if_finite(
    pats_jax.pats(optax.adam(1e-2), noise_scale=0.1, key=0, beta2=0.9), max_consecutive_errors=5
  )
  update = jax.jit(opt.update)
  state = opt.init(params)
  _, state = update(jax.tree.map(jnp.cos, params), state, params)
  before = state.inner_state
  bad = {"w": params["w"].at[1, 2].set(jnp.nan)}
  updates, state = update(bad, state, params)
  np.testing.assert_array_equal(updates["w"], 0)
  assert int(state.notfinite_count) == 1
  chex.assert_trees_all_equal(
    jax.random.key_data(state.inner_state.key), jax.random.key_data(before.key)
  )
  chex.assert_trees_all_equal(state.inner_state._replace(key=None), before._replace(key=None))
  updates, state = update(jax.tree.map(jnp.cos, params), state, params)  # then it steps
  assert int(state.inner_state.count) == 2 and np.all(np.isfinite(updates["w"]))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_lax_cond_and_dtypes_are_stable(dtype):
  params = {"w": jnp.asarray(np.arange(6.0).reshape(2, 3) / 5, dtype), "b": jnp.ones(3, dtype)}
  opt = pats_jax.pats(optax.adam(1e-2), noise_scale=0.1, key=0, beta2=0.9)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"]))(params)
    cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
    updates, state = jax.lax.cond(
      cond, lambda: opt.update(grads, state, params), lambda: (params, state)
    )
    return optax.apply_updates(params, updates), state, updates

  for _ in range(2):
    params, new_state, updates = step(params, state)
    chex.assert_trees_all_equal_dtypes(
      updates, params, {"w": jnp.zeros((), dtype), "b": jnp.zeros((), dtype)}
    )
    assert jax.tree.map(jax.typeof, new_state) == jax.tree.map(jax.typeof, state)
    state = new_state
  chex.assert_type(state.sensitivity["w"], dtype)  # default ema_dtype: the parameter's


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
def test_ema_dtype_bfloat16(param_dtype):
  params = {"w": jnp.ones((3, 4), param_dtype)}
  opt = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, beta2=0.9, ema_dtype=jnp.bfloat16)
  state = opt.init(params)
  chex.assert_type(state.sensitivity["w"], jnp.bfloat16)
  updates, state = jax.jit(opt.update)(jax.tree.map(jnp.sin, params), state, params)
  chex.assert_type([state.sensitivity["w"], state.uncertainty["w"]], jnp.bfloat16)
  chex.assert_type(updates["w"], param_dtype)
  np.testing.assert_allclose(
    np.asarray(state.sensitivity["w"], np.float32), 0.15 * np.abs(np.sin(1.0)), rtol=1e-2
  )


def test_init_with_abstract_params_and_donated_jit():
  abstract = {
    "w": jax.ShapeDtypeStruct((64, 32), jnp.float32),
    "b": jax.ShapeDtypeStruct((32,), jnp.float32),
  }
  opt = pats_jax.pats_adamw(1e-3, noise_scale=0.1, key=0)
  shapes = jax.eval_shape(opt.init, abstract)
  chex.assert_shape(shapes.sensitivity["w"], (64, 32))
  assert shapes.sensitivity["b"] == optax.MaskedNode()
  params = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), abstract)
  state = opt.init(params)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(step, donate_argnums=(0, 1))
  grads = jax.tree.map(lambda x: 0.1 * x, params)
  for _ in range(3):
    params, state = step(params, state, grads)
  assert int(state.count) == 3
  chex.assert_tree_all_finite(params)


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    ({"sensitivity": "fisher"}, ValueError, r"sensitivity must be one of 'taylor', 'gradient'"),
    ({"normalize": "zscore"}, ValueError, r"normalize must be one of 'minmax', 'rank', 'none'"),
    ({"direction": "up"}, ValueError, r"direction must be one of 'normal', 'inverse'"),
    ({"distribution": "laplace"}, ValueError, r"distribution must be one of 'uniform'"),
    ({"noise_scale": -0.1}, ValueError, r"noise_scale must be a finite number >= 0"),
    ({"noise_scale": float("nan")}, ValueError, r"noise_scale must be a finite number"),
    ({"noise_scale": "0.1"}, TypeError, r"noise_scale must be a real scalar"),
    ({"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\)"),
    ({"beta1": -0.1}, ValueError, r"beta1 must be in \[0, 1\)"),
    ({"beta2": 1.5}, ValueError, r"beta2 must be in \[0, 1\)"),
    ({"key": "seed"}, TypeError, r"key must be a JAX PRNG key"),
    ({"key": 1.5}, TypeError, r"key must be a JAX PRNG key"),
    ({"ema_dtype": jnp.int32}, TypeError, r"ema_dtype must be a floating dtype"),
    ({"mask": {"w": "yes"}}, TypeError, r"mask must be a pytree of bools"),
    ({"inner": "adam"}, TypeError, r"inner must be an optax GradientTransformation"),
  ],
)
def test_bad_knobs_fail_at_construction(kwargs, error, match):
  kw = {"inner": optax.sgd(0.1), "noise_scale": 0.1, "key": 0, **kwargs}
  with pytest.raises(error, match=match):
    pats_jax.pats(**kw)


def test_bad_pytrees_fail_with_the_argument_named():
  params = {"w": jnp.ones((3, 4)), "b": jnp.ones(4)}
  opt = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0)
  state = opt.init(params)
  with pytest.raises(ValueError, match="needs params"):
    opt.update(params, state)
  with pytest.raises(ValueError, match="params and updates must have the same pytree"):
    opt.update(params, state, {"w": params["w"]})
  with pytest.raises(ValueError, match="updates leaf 1 has shape"):
    opt.update({"w": jnp.ones((3, 5)), "b": jnp.ones(4)}, state, params)
  with pytest.raises(TypeError, match=r"updates must be a pytree of arrays.*\['b'\]"):
    opt.update({"w": params["w"], "b": "nope"}, state, params)
  with pytest.raises(TypeError, match=r"params must be a pytree of arrays.*\['b'\]"):
    opt.init({"w": params["w"], "b": 1.0})
  other = {"w": jnp.ones((3, 4)), "b": jnp.ones(4), "c": jnp.ones((2, 2))}
  with pytest.raises(ValueError, match=r"state\.sensitivity does not match"):
    opt.update(other, state, other)
  bad_mask = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, mask={"w": True})
  with pytest.raises(ValueError, match="mask must be a pytree of bools with the structure"):
    bad_mask.init(params)
  int_mask = pats_jax.pats(optax.sgd(0.1), noise_scale=0.1, key=0, mask=lambda p: True)
  with pytest.raises(TypeError, match="mask selects a leaf of dtype int32"):
    int_mask.init({"w": jnp.ones((2, 2), jnp.int32)})
  with pytest.raises(ValueError, match="normalize must be one of"):
    pats_jax.noise_amplitude(params, params, noise_scale=0.1, normalize="z")
  with pytest.raises(ValueError, match="noise_scale must be a finite number >= 0"):
    pats_jax.noise_amplitude(params, params, noise_scale=-1.0)

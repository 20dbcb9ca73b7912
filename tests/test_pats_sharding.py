"""PATS on the 8-device CPU mesh (tests/conftest.py): same updates as on one device,
for params replicated or sharded along an axis (a stacked-layers leaf included), and a
state whose sharding is stable."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _compile_log import compile_log
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import pats_jax
from pats_jax import _steps

STEPS = 2


def make_params():
  rng = np.random.default_rng(0)
  return {
    "w": jnp.asarray(rng.normal(size=(16, 32)), jnp.float32),
    "v": jnp.asarray(rng.normal(size=(8, 4, 8)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=(32,)), jnp.float32),
    "u": jnp.asarray(rng.normal(size=(16, 32)) * 3, jnp.float32),
    "s": jnp.asarray(rng.normal(size=(8, 4, 16)), jnp.float32),  # 8 layers stacked on axis 0
  }


def grads_for(params, t):
  rng = np.random.default_rng(100 + t)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def make_opt(normalize):
  return pats_jax.pats(
    optax.adamw(1e-2, weight_decay=0.1),
    noise_scale=0.2,
    key=5,
    beta2=0.9,
    normalize=normalize,
    layer_axis={"w": None, "v": None, "b": None, "u": None, "s": 0},
  )


def run(opt, params, place, scalar_sharding):
  """STEPS jitted updates with params and grads placed by `place`; updates and states.

  The state's scalars (count, keys) are committed to `scalar_sharding` up front, as a
  trainer does, so that the first update's outputs do not change the jit cache key.
  """
  params = place(params)
  state = jax.tree.map(
    lambda x: x if x.ndim else jax.device_put(x, scalar_sharding), opt.init(params)
  )
  update = jax.jit(opt.update)
  updates_seq, states = [], [state]
  for t in range(STEPS):
    with compile_log() as log:
      updates, state = update(place(grads_for(params, t)), state, params)
    assert len([m for m in log if "update_fn" in m]) == (1 if t == 0 else 0), log
    params = optax.apply_updates(params, updates)
    updates_seq.append(updates)
    states.append(state)
  return updates_seq, states, params


def specs_for(layout):
  if layout == "replicated":
    return {"w": P(), "v": P(), "b": P(), "u": P(), "s": P()}
  if layout == "sharded_rows":  # s: sharded along its layers
    return {"w": P("x"), "v": P("x"), "b": P("x"), "u": P("x"), "s": P("x")}
  columns = {"w": P(None, "x"), "v": P(None, None, "x"), "b": P("x"), "u": P(None, "x")}
  return {**columns, "s": P(None, None, "x")}


def arrays(tree):
  """Array leaves (typed PRNG keys as their raw data) for comparisons."""
  return [
    jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    for x in jax.tree.leaves(tree)
  ]


CASES = [
  (axis, layout, "minmax")
  for axis in (AxisType.Auto, AxisType.Explicit)
  for layout in ("replicated", "sharded_rows", "sharded_cols")
]
CASES += [(AxisType.Auto, "sharded_rows", "rank"), (AxisType.Explicit, "sharded_cols", "rank")]
CASES += [(AxisType.Explicit, "sharded_rows", "rank")]


@pytest.mark.parametrize(
  ("axis_type", "layout", "normalize"),
  CASES,
  ids=[f"{a.name.lower()}-{lay}-{n}" for a, lay, n in CASES],
)
def test_mesh_gives_single_device_updates_and_stable_state_sharding(axis_type, layout, normalize):
  assert jax.device_count() == 8, "tests/conftest.py sets jax_num_cpu_devices=8"
  opt = make_opt(normalize)
  device0 = jax.devices()[0]
  ref_updates, ref_states, _ = run(
    opt, make_params(), lambda t: jax.device_put(t, device0), device0
  )

  mesh = jax.make_mesh((8,), ("x",), axis_types=(axis_type,))
  specs = specs_for(layout)
  shardings = {k: NamedSharding(mesh, s) for k, s in specs.items()}
  place = lambda t: jax.device_put(t, shardings)
  with jax.set_mesh(mesh):
    updates, states, params = run(opt, make_params(), place, NamedSharding(mesh, P()))

  # Same updates (noise included) and EMAs as on one device.
  chex.assert_trees_all_close(updates, ref_updates, rtol=2e-6, atol=1e-7)
  chex.assert_trees_all_close(
    [arrays(s) for s in states], [arrays(s) for s in ref_states], rtol=2e-6, atol=1e-7
  )

  # The params and the full-size state leaves keep the params' sharding; all state
  # leaves keep their sharding from one update to the next.
  for name, sharding in shardings.items():
    assert params[name].sharding.is_equivalent_to(sharding, params[name].ndim)
  for state in states:
    for leaf_name in ("w", "v", "u", "s"):
      ema = state.sensitivity[leaf_name]
      assert ema.sharding.is_equivalent_to(shardings[leaf_name], ema.ndim)
    for mu in (state.inner_state[0].mu, state.inner_state[0].nu):
      for name, x in mu.items():
        assert x.sharding.is_equivalent_to(shardings[name], x.ndim)
  for before, after in itertools.pairwise(states):
    for x, y in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
      assert y.sharding.is_equivalent_to(x.sharding, x.ndim), (x.sharding, y.sharding)
  if axis_type == AxisType.Explicit:  # sharding in types: init's types are update's types
    assert jax.tree.map(jax.typeof, states[0]) == jax.tree.map(jax.typeof, states[1])


def test_noise_is_the_same_on_any_device_count():
  """On 1, 2 and 8 devices, rows sharded: ε bit for bit (drawn sharded, explicit
  axes), and the whole noise up to the reduction order of min, max and std (auto axes)."""
  params = make_params()
  opt = pats_jax.pats(optax.set_to_zero(), noise_scale=0.2, key=9)
  draw = jax.jit(lambda key, thetas: _steps.draw_noise(key, [1.0] * len(thetas), thetas, "uniform"))
  eps, noises = [], []
  for n in (1, 2, 8):
    devices = jax.devices()[:n]
    mesh = jax.make_mesh((n,), ("x",), axis_types=(AxisType.Explicit,), devices=devices)
    with jax.set_mesh(mesh):
      p = jax.device_put(params, NamedSharding(mesh, P("x")))
      eps.append(draw(jax.random.key(3), [p["w"], p["v"]]))
    assert eps[-1][0].sharding.is_equivalent_to(p["w"].sharding, 2)
    mesh = jax.make_mesh((n,), ("x",), axis_types=(AxisType.Auto,), devices=devices)
    place = lambda t, mesh=mesh: jax.device_put(t, NamedSharding(mesh, P("x")))
    p, g = place(params), place(grads_for(params, 0))
    updates, _ = jax.jit(opt.update)(g, opt.init(p), p)
    noises.append(updates)
  for other in eps[1:]:
    chex.assert_trees_all_equal(other, eps[0])
  for other in noises[1:]:
    chex.assert_trees_all_close(other, noises[0], rtol=2e-6, atol=1e-8)


def test_jit_with_shardings_and_donation():
  """A trainer's step: in/out shardings from the initial state, donated buffers."""
  mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Auto,))
  shardings = {k: NamedSharding(mesh, s) for k, s in specs_for("sharded_rows").items()}
  params = jax.device_put(make_params(), shardings)
  opt = make_opt("minmax")
  state = opt.init(params)
  replicated = NamedSharding(mesh, P())
  state = jax.tree.map(lambda x: x if x.ndim else jax.device_put(x, replicated), state)
  state_shardings = jax.tree.map(lambda x: x.sharding, state)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  step = jax.jit(
    step,
    in_shardings=(shardings, state_shardings, shardings),
    out_shardings=(shardings, state_shardings),
    donate_argnums=(0, 1),
  )
  for t in range(2):
    params, state = step(params, state, jax.device_put(grads_for(params, t), shardings))
  assert jax.tree.map(lambda x: x.sharding, state) == state_shardings
  assert int(state.count) == 2


@pytest.mark.parametrize("normalize", ["minmax", "none"])
def test_statistics_of_an_fsdp_sharded_leaf_reduce_with_all_reduces(normalize):
  """min I, max I and std(θ_W) of a leaf whose rows are sharded over an fsdp axis: partial
  results combined by all-reduces; no all-gather of the matrix or of partial results."""
  mesh = jax.make_mesh((2, 4), ("data", "fsdp"), axis_types=(AxisType.Auto,) * 2)
  sharding = NamedSharding(mesh, P("fsdp", None))
  params = {"w": jax.device_put(make_params()["u"].reshape(64, 8), sharding)}
  opt = pats_jax.pats(optax.adamw(1e-3), noise_scale=0.1, key=0, normalize=normalize)
  state = opt.init(params)
  hlo = jax.jit(opt.update).lower(params, state, params).compile().as_text()
  ops = [line.split("=", 1)[1] for line in hlo.splitlines() if " = " in line]
  count = lambda kind: sum(f" {kind}(" in op or f" {kind}-start(" in op for op in ops)
  assert count("all-gather") == 0
  assert count("all-reduce") >= 1

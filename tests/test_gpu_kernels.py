"""The GPU kernel counts of `scripts/bench/gpu_compile.py` on small texts: no CUDA plugin needed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import tiny_config

from pats_jax.training import (
  compiled_program,
  dry_run,
  gpu_targets,
  gpu_thunks,
  optimizers,
  reductions,
  steps,
)
from scripts.bench import gpu_compile

# An optimised GPU module: a loop of 3 iterations whose body runs a Triton GEMM, a reduction
# and a scalar counter; after it a cuBLAS GEMM, cuDNN attention, a copy and a Triton softmax.
HLO = """\
HloModule jit_step, is_scheduled=true

%gemm (p0: bf16[64,64], p1: bf16[64,64]) -> bf16[64,64] {
  %p0 = bf16[64,64]{1,0} parameter(0)
  %p1 = bf16[64,64]{1,0} parameter(1)
  ROOT %dot = bf16[64,64]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

%sum (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add = f32[] add(%x, %y)
}

%fused_reduce (p: bf16[64,64]) -> f32[64] {
  %p = bf16[64,64]{1,0} parameter(0)
  %c = f32[64,64]{1,0} convert(%p)
  %zero = f32[] constant(0)
  ROOT %r = f32[64]{0} reduce(%c, %zero), dimensions={1}, to_apply=%sum
}

%fused_inc (i: s32[]) -> s32[] {
  %i = s32[] parameter(0)
  %one = s32[] constant(1)
  ROOT %next = s32[] add(%i, %one)
}

%softmax (p: f32[64,64]) -> f32[64,64] {
  %p = f32[64,64]{1,0} parameter(0)
  ROOT %e = f32[64,64]{1,0} exponential(%p)
}

%body (state: (s32[], bf16[64,64])) -> (s32[], bf16[64,64]) {
  %state = (s32[], bf16[64,64]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %x = bf16[64,64]{1,0} get-tuple-element(%state), index=1
  %g = bf16[64,64]{1,0} fusion(%x, %x), kind=kCustom, calls=%gemm, \
metadata={op_name="jit(step)/jvp(Model)/dot_general"}, \
backend_config={"fusion_backend_config":{"kind":"__triton_nested_gemm_fusion"}}
  %red = f32[64]{0} fusion(%g), kind=kInput, calls=%fused_reduce, \
metadata={op_name="jit(step)/transpose(jvp(Model))/reduce_sum"}
  %inc = s32[] fusion(%i), kind=kLoop, calls=%fused_inc
  ROOT %out = (s32[], bf16[64,64]{1,0}) tuple(%inc, %g)
}

%cond (state: (s32[], bf16[64,64])) -> pred[] {
  %state = (s32[], bf16[64,64]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %n = s32[] constant(3)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (a: bf16[64,64]) -> f32[64,64] {
  %a = bf16[64,64]{1,0} parameter(0)
  %zero = s32[] constant(0)
  %init = (s32[], bf16[64,64]{1,0}) tuple(%zero, %a)
  %loop = (s32[], bf16[64,64]{1,0}) while(%init), condition=%cond, body=%body, \
backend_config={"known_trip_count":{"n":"3"}}
  %y = bf16[64,64]{1,0} get-tuple-element(%loop), index=1
  %mm = bf16[64,64]{1,0} custom-call(%y, %y), custom_call_target="__cublas$lt$matmul"
  %att = (bf16[64,64]{1,0}, u8[0]{0}) custom-call(%mm, %mm, %mm), \
custom_call_target="__cudnn$fmhaSoftmax"
  %o = bf16[64,64]{1,0} get-tuple-element(%att), index=0
  %cp = bf16[64,64]{1,0} copy(%o)
  %f = f32[64,64]{1,0} convert(%cp)
  ROOT %s = f32[64,64]{1,0} fusion(%f), kind=kCustom, calls=%softmax, \
backend_config={"fusion_backend_config":{"kind":"__triton"}}
}
"""

# Its thunk sequence as XLA dumps it: two copies, the loop (condition kernel; body one command
# buffer of three kernels), then a command buffer of two thunks and a kernel outside any.
SEQUENCE = """\
001: kCopy         [source       | next=003 (1)] kCopy
002: kCopy         [source       | next=003 (1)] kCopy
003: kWhile        [prev=002 (1) | next=010 (1)]
condition:
    004: kCustomKernel [source | sink] loop_compare_fusion grid: [1, 1, 1]
  body:
    000: kCommandBuffer [source | sink]
        005: kCustomKernel [source       | next=006 (1)] g grid: [64, 1, 1]
        006: kCustomKernel [prev=005 (1) | next=007 (1)] red grid: [8, 1, 1]
        007: kCustomKernel [prev=006 (1) | sink        ] inc grid: [1, 1, 1]
000: kCommandBuffer [source | sink]
    010: kGemm [source | next=011 (1)] mm
    011: kCuDnn [prev=010 (1) | sink] att
012: kCustomKernel [prev=011 (1) | sink        ] s grid: [32, 1, 1]
"""
METADATA = """\
thunk_metadata {
  thunk_info {
    profile_annotation: "loop"
    thunk_id: 3
  }
  thunk_kind: "kWhile"
}
thunk_metadata {
  thunk_info {
    profile_annotation: "s"
    thunk_id: 12
  }
  thunk_kind: "kCustomKernel"
}
"""


def test_kernel_kinds_name_what_runs_a_custom_kernel():
  _, computations = compiled_program.parse_module(HLO)
  kinds = {inst.name: compiled_program.kernel_kind(inst) for inst in computations["main"]}
  assert kinds["mm"] == "custom-call (__cublas$lt$matmul)"
  assert kinds["att"] == "custom-call (__cudnn$fmhaSoftmax)"
  assert kinds["s"] == "fusion (Custom: __triton)"
  assert kinds["cp"] == "copy"


def test_gpu_kernels_count_every_kernel_with_loop_trips():
  counts = gpu_compile.kernel_counts(HLO, top=2)
  tally = compiled_program.hlo_stats(HLO)
  # Per iteration a GEMM, a reduction and the counter's scalar fusion; then cuBLAS, cuDNN,
  # the copy, the convert and the Triton fusion.
  assert counts["kernels"] == 3 * 3 + 5 == tally.kernels + tally.scalar_ops
  assert counts["by_category"] == {
    "GEMM": 3 + 1,
    "cuDNN": 1,
    "reduction": 3,
    "elementwise": 3,
    "Triton": 1,
    "copy": 1,
    "other": 1,
  }
  assert [group["count"] for group in counts["top_kernels"]] == [3, 3]
  assert counts["by_phase"] == {"forward": 3, "backward": 3, "rest": 3 + 5}


def test_launches_count_graphs_and_kernels_outside_them_per_run():
  launches = gpu_thunks.launches(SEQUENCE, METADATA, HLO)
  # The loop (3 trips): its condition runs 4 times outside graphs, its body's graph 3 times.
  assert launches.graphs == 3 + 1
  assert launches.ungraphed == 2 + 4 + 1
  assert launches.in_graphs == 3 * 3 + 2
  assert launches.total == 4 + 7
  assert dict(launches.ungraphed_kinds) == {"kCopy": 2, "kCustomKernel": 5}


def test_a_loop_without_its_trip_count_runs_once():
  launches = gpu_thunks.launches(SEQUENCE, "", HLO)
  assert (launches.graphs, launches.ungraphed, launches.in_graphs) == (2, 2 + 2 + 1, 3 + 2)


def test_target_config_describes_the_card():
  text = gpu_targets.parse_card("H100-SXM").target_config(cudnn=(9, 8, 0))
  assert "core_count: 132" in text
  assert "cuda_compute_capability { major: 9 minor: 0 }" in text
  assert "dnn_version_info { major: 9 minor: 8 patch: 0 }" in text
  assert 'device_description_str: "NVIDIA H100 80GB HBM3"' in text
  h200 = gpu_targets.parse_card("h200").target_config(cudnn=(9, 8, 0))
  assert f"device_memory_size: {143771 * 2**20}" in h200


def test_an_unknown_gpu_names_the_known_ones():
  with pytest.raises(gpu_targets.GpuNameError, match="known GPUs: h100, h200"):
    gpu_targets.parse_card("a100")


def test_without_the_cuda_plugin_the_benchmark_stops_with_one_message(monkeypatch, capsys):
  monkeypatch.setattr(gpu_targets, "_has", lambda module: False)
  monkeypatch.setattr(dry_run, "prepare_host", lambda: None)
  monkeypatch.setattr("sys.argv", ["gpu_compile", "--num_layers", "2"])
  with pytest.raises(SystemExit) as exit_:
    gpu_compile.main()
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1
  assert "needs the jax CUDA plugin" in err and 'pip install "jax[cuda12]==' in err


class _Linear:
  """A stand-in for the Flax classifier: logits = mean token features @ kernel + bias."""

  def apply(self, variables, input_ids, attention_mask, token_type_ids, **unused):
    params = variables["params"]
    features = jnp.stack([input_ids, attention_mask, token_type_ids], -1).astype(jnp.float32)
    return features.mean(1) @ params["kernel"] + params["bias"]


def test_the_gpu_program_shape_changes_no_state_and_no_metric_beyond_rounding():
  config = tiny_config(arg="method=pats", warmup_ratio=0.0)
  optimizer = optimizers.make_optimizer(config, num_updates=8)
  rng = np.random.default_rng(0)
  params = {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "bias": jnp.ones(2)}
  batch = {
    "input_ids": jnp.asarray(rng.integers(0, 50, (4, 6)), jnp.int32),
    "attention_mask": jnp.ones((4, 6), jnp.int32),
    "token_type_ids": jnp.zeros((4, 6), jnp.int32),
    "labels": jnp.asarray([0, 1, 1, 0], jnp.int32),
  }
  fused, after = (
    steps.make_train_step(
      _Linear(),
      optimizer,
      seed=0,
      regression=False,
      norms_after_update=flag,
      grouped_reductions=flag,
    )
    for flag in (False, True)
  )
  state = steps.init_state(params, optimizer.tx)
  assert "optimization_barrier" in str(jax.make_jaxpr(after)(state, batch))
  assert "optimization_barrier" not in str(jax.make_jaxpr(fused)(state, batch))
  plain = lambda tree: jax.tree.map(
    lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
    tree,
  )
  for _ in range(2):
    (state_a, metrics_a), (state_b, metrics_b) = (
      jax.jit(fused)(state, batch),
      jax.jit(after)(state, batch),
    )
    jax.tree.map(np.testing.assert_array_equal, plain(state_a), plain(state_b))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), metrics_a, metrics_b)
    state = state_a


def test_grouped_reductions_give_the_per_leaf_values():
  rng = np.random.default_rng(1)
  tree = {
    "w": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
    "b": jnp.asarray(rng.normal(size=3), jnp.float32),
    "s": jnp.float32(2.0),
  }
  expected = np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in tree.values()))
  for grouped in (False, True):
    assert float(reductions.global_norm(tree, grouped=grouped)) == pytest.approx(expected, rel=1e-6)
    assert bool(reductions.all_finite(tree, grouped=grouped))
    for bad in (np.inf, -np.inf, np.nan):
      poisoned = {**tree, "b": tree["b"].at[1].set(bad)}
      assert not bool(reductions.all_finite(poisoned, grouped=grouped))
  # One reduction over the concatenation, not one per leaf.
  jaxpr = str(jax.make_jaxpr(lambda t: reductions.global_norm(t, grouped=True))(tree))
  assert jaxpr.count("reduce_sum") == 1 and "concatenate" in jaxpr


def _gradients(scale: float) -> dict:
  rng = np.random.default_rng(2)
  return {
    "w": jnp.asarray(scale * rng.normal(size=(6, 5)), jnp.float32),
    "b": jnp.asarray(scale * rng.normal(size=5), jnp.float32),
  }


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_grouped_clipping_is_optax_clipping_up_to_the_norms_rounding(scale):
  grads = _gradients(scale)
  norm = float(np.sqrt(sum(np.sum(np.square(np.asarray(g, np.float64))) for g in grads.values())))
  per_leaf, grouped = (
    optax.clip_by_global_norm(1.0),
    reductions.clip_by_global_norm(1.0, grouped=True),
  )
  want, want_state = per_leaf.update(grads, per_leaf.init(grads))
  got, got_state = grouped.update(grads, grouped.init(grads))
  assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
  if norm < 1.0:  # Below the threshold the updates pass through untouched.
    jax.tree.map(np.testing.assert_array_equal, got, want)
  else:
    assert float(reductions.global_norm(got)) == pytest.approx(1.0, rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), got, want)
  assert "concatenate" in str(jax.make_jaxpr(lambda g: grouped.update(g, got_state))(grads))


def test_gpu_programs_clip_by_the_grouped_norm():
  config = tiny_config(arg="method=pats", grad_clip_norm=1.0)
  default, grouped = (
    dry_run.abstract_run(config, None, jax.devices()[:1], gpu_program=flag).steps.optimizer
    for flag in (False, True)
  )
  grads = _gradients(10.0)
  for optimizer, joined in ((default, False), (grouped, True)):
    state = optimizer.tx.init(grads)
    jaxpr = str(jax.make_jaxpr(lambda g, s, o=optimizer: o.tx.update(g, s, grads))(grads, state))
    assert ("concatenate" in jaxpr) == joined
  # A checkpoint of either restores into the other: the same state tree.
  assert jax.tree.structure(default.tx.init(grads)) == jax.tree.structure(grouped.tx.init(grads))


def test_gpu_programs_join_the_attention_projections():
  # Joined (GPU): one forward matmul for each layer's query, key and value instead of three.
  config = tiny_config(arg="method=plain")
  matmuls = {}
  for flag in (False, True):
    run = dry_run.abstract_run(config, None, jax.devices()[:1], gpu_program=flag)
    jitted, args = run.step_args("eval")
    matmuls[flag] = jitted.lower(*args).as_text().count("dot_general")
  # tiny-bert: 2 layers, 2 matmuls fewer in each.
  assert matmuls[False] - matmuls[True] == 4

"""The compiled FSDP program of the tiny run on 8 CPU devices (mesh data=2 x fsdp=4), for every
registered model family.

A contract on each family of `pats_jax.models.families` (its `tiny-*` model): its train and
eval steps compile without an activation that XLA can only re-split by replicating it
("Involuntary full rematerialization", which XLA reports on stderr from C++, so the steps are
compiled in a subprocess whose stderr is read), and the train step returns the PATS
sensitivity EMA of every leaf sharded like the leaf. PATS's statistics of a sharded leaf are
reduced across the shards with small collectives: neither the PATS-statistics step nor the
PATS train step gathers more than a few partial results per matrix beyond what the plain step
gathers (the weights themselves, for the model).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest
from _train_helpers import REPO_ROOT

from pats_jax import models
from pats_jax.training import sources

# The largest all-gather PATS's statistics may add, in bytes: a few partial results (minima,
# maxima, sums) per matrix, far below a matrix of the tiny models (>= 2 KiB per shard).
SMALL_GATHER_BYTES = 512

_COMPILE = r"""
import json, sys
from unittest import mock
import jax
from configs import tiny
import pats_jax
from pats_jax.training import compiled_program, dry_run, tpu_slices

model, method, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")

def all_gathers(compiled):
  _, computations = compiled_program.parse_module(compiled.as_text())
  return sorted(
    compiled_program.shape_bytes(op.shape)
    for ops in computations.values() for op in ops
    if op.opcode in ("all-gather", "all-gather-start")
  )

def by_path(tree):
  is_leaf = lambda x: isinstance(x, jax.sharding.Sharding)
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
  return {jax.tree_util.keystr(path): leaf for path, leaf in flat}

def pats_state(tree):
  is_state = lambda x: isinstance(x, pats_jax.PatsState)
  return next(x for x in jax.tree.leaves(tree, is_leaf=is_state) if is_state(x))

config = tiny.get_config(f"method={method},model={model}")
config.mesh.fsdp = 4
with mock.patch.object(tpu_slices, "topology_devices", lambda _: jax.devices()):
  run = dry_run.abstract_run(config, tpu_slices.parse_slice("v5e:2x4"))
out = {"gathers": {}}
for name in names:
  jitted, args = run.step_args(name)
  print(f"=== compiling {name}", file=sys.stderr, flush=True)
  compiled = jitted.lower(*args).compile()
  out["gathers"][name] = all_gathers(compiled)
  if name == "train" and method == "pats":
    state = compiled.output_shardings[0]
    params = by_path(state.params)
    ema = by_path(pats_state(state.opt_state).sensitivity)
    out["ema_shardings"] = {
      path: [str(ema[path].spec), str(params[path].spec), ema[path] == params[path]]
      for path in ema
    }
print(json.dumps(out))
"""


def _tiny_models() -> dict[str, str]:
  """model_type -> the `tiny-*` model name of every registered family."""
  names = {model_type: name for name, model_type in sources.TINY_MODELS.items()}
  missing = set(models.SUPPORTED_MODEL_TYPES) - set(names)
  assert not missing, f"families without a tiny-* model in sources.TINY_MODELS: {missing}"
  return {model_type: names[model_type] for model_type in models.SUPPORTED_MODEL_TYPES}


def _compile(model: str, method: str, steps: str) -> tuple[dict, str]:
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
  }
  done = subprocess.run(
    [sys.executable, "-c", _COMPILE, model, method, steps],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module", params=list(_tiny_models().values()))
def family_program(request):
  """The family's PATS train, eval and PATS-statistics steps, compiled: (figures, stderr)."""
  return request.param, *_compile(request.param, "pats", "train,eval,pats_stats")


def test_fsdp_steps_compile_without_involuntary_rematerialization(family_program):
  model, _, stderr = family_program
  warnings = [line for line in stderr.splitlines() if "Involuntary full rematerialization" in line]
  assert not warnings, f"{model}: {len(warnings)} warnings, e.g. {warnings[0]}"


def test_pats_emas_are_sharded_like_their_parameters(family_program):
  model, figures, _ = family_program
  shardings = figures["ema_shardings"]
  assert shardings, f"{model}: the PATS state holds no sensitivity EMA"
  unlike = {path: specs for path, specs in shardings.items() if not specs[2]}
  assert not unlike, f"{model}: EMA sharded unlike its parameter (ema, param): {unlike}"
  assert any("fsdp" in specs[0] for specs in shardings.values()), f"{model}: no EMA is sharded"


def test_pats_statistics_step_gathers_only_partial_results(family_program):
  model, figures, _ = family_program
  large = [size for size in figures["gathers"]["pats_stats"] if size > SMALL_GATHER_BYTES]
  assert not large, f"{model}: the PATS-statistics step all-gathers {large} bytes"


def test_pats_train_step_gathers_no_more_than_the_weights():
  """The PATS train step's all-gathers beyond the plain step's are partial results only."""
  pats, _ = _compile("tiny-bert", "pats", "train")
  plain, _ = _compile("tiny-bert", "plain", "train")
  extra = collections.Counter(pats["gathers"]["train"]) - collections.Counter(
    plain["gathers"]["train"]
  )
  large = sorted(size for size in extra.elements() if size > SMALL_GATHER_BYTES)
  assert not large, f"PATS adds all-gathers of {large} bytes to the train step"
  assert any(size > SMALL_GATHER_BYTES for size in plain["gathers"]["train"]), (
    "the fsdp train step gathers no weight"
  )

"""The compiled FSDP program of the tiny run on 8 CPU devices (mesh data=2 x fsdp=4).

XLA reports an activation it can only re-split by replicating it ("Involuntary full
rematerialization") on stderr from C++, so the steps are compiled in a subprocess whose
stderr is read. The same subprocess reports the size of every all-gather of the train step
(with and without PATS) and of the PATS-statistics step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _train_helpers import REPO_ROOT

_COMPILE = r"""
import json, sys
from unittest import mock
import jax
from configs import tiny
from pats_jax.training import compiled_program, dry_run, tpu_slices

def all_gathers(compiled):
  _, computations = compiled_program.parse_module(compiled.as_text())
  return sorted(
    compiled_program.shape_bytes(op.shape)
    for ops in computations.values() for op in ops
    if op.opcode in ("all-gather", "all-gather-start")
  )

out = {}
for method in ("pats", "plain"):
  config = tiny.get_config(f"method={method}")
  config.mesh.fsdp = 4
  with mock.patch.object(tpu_slices, "topology_devices", lambda _: jax.devices()):
    run = dry_run.abstract_run(config, tpu_slices.parse_slice("v5e:2x4"))
  for name in ("train", "eval", "pats_stats"):
    jitted, args = run.step_args(name)
    if jitted is not None:
      out[f"{method}/{name}"] = all_gathers(jitted.lower(*args).compile())
  out["smallest_matrix_bytes"] = min(
    leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(run.pretrained.params)
    if leaf.ndim >= 2
  )
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def fsdp_program():
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
  }
  done = subprocess.run(
    [sys.executable, "-c", _COMPILE],
    cwd=REPO_ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_fsdp_steps_compile_without_involuntary_rematerialization(fsdp_program):
  _, stderr = fsdp_program
  warnings = [line for line in stderr.splitlines() if "Involuntary full rematerialization" in line]
  assert not warnings, warnings[0]


def test_pats_statistics_never_gather_a_matrix(fsdp_program):
  gathers, _ = fsdp_program
  matrix = gathers["smallest_matrix_bytes"]
  assert all(size < matrix for size in gathers["pats/pats_stats"]), gathers["pats/pats_stats"]
  # The train step gathers each weight for the model; PATS adds no gather of a matrix.
  large = lambda sizes: [size for size in sizes if size >= matrix]
  assert large(gathers["pats/train"]) == large(gathers["plain/train"])
  assert large(gathers["plain/train"]), "the fsdp train step gathers no weight"

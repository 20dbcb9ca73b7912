"""Sharding: 8 CPU devices (data parallel, and with an fsdp axis) match a 1-device mesh."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from _train_helpers import tiny_config, use_compilation_cache
from jax.sharding import PartitionSpec

from pats_jax.training import sharding, trainer


def test_mesh_shapes_and_errors():
  config = tiny_config()
  assert dict(sharding.make_mesh(config).shape) == {"data": 1, "fsdp": 1}
  config.mesh.data, config.mesh.fsdp = -1, 2
  assert dict(sharding.make_mesh(config).shape) == {"data": len(jax.devices()) // 2, "fsdp": 2}
  config.mesh.fsdp = 3
  with pytest.raises(ValueError, match="fsdp=3"):
    sharding.make_mesh(config)
  config.mesh.data, config.mesh.fsdp = 16, 1
  with pytest.raises(ValueError, match="does not fit"):
    sharding.make_mesh(config)


def test_param_and_state_shardings_follow_logical_axes():
  config = tiny_config(mesh__data=2, mesh__fsdp=4)
  mesh = sharding.make_mesh(config)
  params = {
    "embeddings": {"word": jax.ShapeDtypeStruct((30, 8), np.float32)},
    "layer": {
      "kernel": jax.ShapeDtypeStruct((8, 6), np.float32),
      "bias": jax.ShapeDtypeStruct((6,), np.float32),
    },
  }
  logical = {
    "embeddings": {"word": PartitionSpec("vocab", "embed")},
    "layer": {"kernel": PartitionSpec("embed", "mlp"), "bias": PartitionSpec("mlp")},
  }
  shardings = sharding.param_shardings(params, logical, mesh, fsdp=True)
  assert shardings["layer"]["kernel"].spec == PartitionSpec("fsdp", None)
  assert shardings["embeddings"]["word"].spec == PartitionSpec(None, "fsdp")
  assert shardings["layer"]["bias"].spec == PartitionSpec(None)
  odd = {"layer": {"kernel": jax.ShapeDtypeStruct((6, 6), np.float32)}}
  odd_sharding = sharding.param_shardings(
    odd, {"layer": {"kernel": logical["layer"]["kernel"]}}, mesh, fsdp=True
  )
  assert odd_sharding["layer"]["kernel"].spec == PartitionSpec(None, None)  # 6 % 4 != 0.
  state = {"mu": params, "count": jax.ShapeDtypeStruct((), np.int32)}
  state_shardings = sharding.state_shardings(state, params, shardings, mesh)
  assert state_shardings["mu"]["layer"]["kernel"] == shardings["layer"]["kernel"]
  assert state_shardings["count"].spec == PartitionSpec()


def _losses(workdir):
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.array([line["loss"] for line in lines if "loss" in line])


@pytest.mark.slow
def test_eight_devices_match_one_device(tmp_path):
  use_compilation_cache()
  overrides = {"max_steps": 6, "batch_size": 8, "eval_batch_size": 16}
  results = {}
  for name, mesh in {"one": (1, 1), "data8": (8, 1), "fsdp": (4, 2)}.items():
    config = tiny_config(arg="method=pats", mesh__data=mesh[0], mesh__fsdp=mesh[1], **overrides)
    results[name] = trainer.train_and_evaluate(config, tmp_path / name)
  reference = _losses(tmp_path / "one")
  for name in ("data8", "fsdp"):
    np.testing.assert_allclose(_losses(tmp_path / name), reference, rtol=2e-4, atol=1e-5)
    for metric, value in results["one"]["final"]["metrics"].items():
      assert results[name]["final"]["metrics"][metric] == pytest.approx(value, abs=1e-6), metric


def test_rank_normalisation_is_refused_on_sharded_parameters():
  from pats_jax.training import validate

  config = tiny_config(arg="method=pats", mesh__fsdp=4, pats__normalize="rank")
  with pytest.raises(validate.ConfigError, match=r"config\.pats\.normalize='rank'.*fsdp=4"):
    validate.check_config(config)
  validate.check_config(tiny_config(arg="method=pats", mesh__fsdp=1, pats__normalize="rank"))
  validate.check_config(tiny_config(arg="method=plain", mesh__fsdp=4, pats__normalize="rank"))


def test_vectors_stay_replicated_and_the_state_follows_its_parameter():
  config = tiny_config(mesh__data=2, mesh__fsdp=4)
  mesh = sharding.make_mesh(config)
  params = {
    "norm": {"scale": jax.ShapeDtypeStruct((8,), np.float32)},
    "layers": {"scale": jax.ShapeDtypeStruct((3, 8), np.float32)},
    "dense": {"kernel": jax.ShapeDtypeStruct((8, 8), np.float32)},
  }
  logical = {
    "norm": {"scale": PartitionSpec("embed")},
    "layers": {"scale": PartitionSpec("layers", "embed")},
    "dense": {"kernel": PartitionSpec("embed", "mlp")},
  }
  shardings = sharding.param_shardings(params, logical, mesh, fsdp=True)
  assert shardings["norm"]["scale"].spec == PartitionSpec(None)
  assert shardings["layers"]["scale"].spec == PartitionSpec(None, None)
  assert shardings["dense"]["kernel"].spec == PartitionSpec("fsdp", None)
  state = {"pats": {"ema": params, "count": jax.ShapeDtypeStruct((), np.int32)}}
  state_shardings = sharding.state_shardings(state, params, shardings, mesh)
  assert state_shardings["pats"]["ema"]["dense"]["kernel"] == shardings["dense"]["kernel"]
  assert state_shardings["pats"]["count"].spec == PartitionSpec()

"""The device mesh, `NamedSharding`s for batches, parameters and optimizer state, multi-host setup.

The mesh has axes `("data", "fsdp")` over all devices (of all processes). Batches are split over
both axes; parameters follow the models' logical axis names through `pats_jax.models.axis_rules`
(replicated, or the model dimension of every matrix over `"fsdp"`), with any dimension that does
not divide evenly replicated; optimizer-state leaves shaped like a parameter take its sharding,
the rest (counts, PRNG keys, scalars) are replicated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")

# Environment variables that mean "this process is one of several" (SLURM, Open MPI, TPU pods).
_MULTI_HOST_ENV = (
  "JAX_COORDINATOR_ADDRESS",
  "SLURM_JOB_ID",
  "OMPI_COMM_WORLD_SIZE",
  "TPU_WORKER_HOSTNAMES",
  "MEGASCALE_COORDINATOR_ADDRESS",
)


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> bool:
  """Calls `jax.distributed.initialize` for multi-process runs; must precede any JAX computation.

  `config.distributed.initialize`: "yes" always initialises, "no" never, "auto" when a
  coordinator address is configured or a cluster environment variable is set (JAX then finds
  the coordinator, process count and id itself: SLURM, Open MPI, Cloud TPU pods).

  Args:
    config: the run's config (`config.distributed`).

  Returns:
    True when this call initialised the distributed runtime.
  """
  dist = config.distributed
  if dist.initialize not in ("auto", "yes", "no"):
    raise ValueError(f"config.distributed.initialize={dist.initialize!r}; expected auto/yes/no")
  wanted = dist.initialize == "yes" or (
    dist.initialize == "auto"
    and (bool(dist.coordinator_address) or any(os.environ.get(name) for name in _MULTI_HOST_ENV))
  )
  if not wanted or jax.distributed.is_initialized():
    return False
  kwargs = {}
  if dist.coordinator_address:
    kwargs = {
      "coordinator_address": dist.coordinator_address,
      "num_processes": dist.num_processes or None,
      "process_id": dist.process_id if dist.process_id >= 0 else None,
    }
  if dist.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", dist.cpu_collectives)
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d", jax.process_index(), jax.process_count())
  return True


def make_mesh(config: ml_collections.ConfigDict, devices: Sequence[Any] | None = None) -> Mesh:
  """A `("data", "fsdp")` mesh of `mesh.data * mesh.fsdp` devices (`data=-1`: all the rest).

  `devices` defaults to `jax.devices()`; a dry run passes the devices of a TPU topology.
  """
  devices = list(jax.devices() if devices is None else devices)
  fsdp, data = config.mesh.fsdp, config.mesh.data
  if fsdp < 1 or len(devices) % fsdp:
    raise ValueError(f"config.mesh.fsdp={fsdp} must be >= 1 and divide the {len(devices)} devices")
  if data == -1:
    data = len(devices) // fsdp
  if data < 1 or data * fsdp > len(devices):
    raise ValueError(
      f"config.mesh.data={config.mesh.data} x fsdp={fsdp} does not fit the "
      f"{len(devices)} devices; use data=-1 for all of them"
    )
  if data * fsdp < len(devices) and jax.process_count() > 1:
    raise ValueError("a multi-process run must use all devices: set config.mesh.data=-1")
  return Mesh(np.asarray(devices[: data * fsdp]).reshape(data, fsdp), MESH_AXES)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows split over all mesh axes."""
  return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  """The same value on every device."""
  return NamedSharding(mesh, PartitionSpec())


def _divisible(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
  """Replaces the mesh axes of dimensions they do not divide evenly by None (replicated)."""
  entries = []
  for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec)), strict=True):
    names = (axes,) if isinstance(axes, str) else tuple(axes or ())
    size = int(np.prod([mesh.shape[name] for name in names]))
    entries.append(axes if size > 0 and dim % size == 0 else None)
  return PartitionSpec(*entries)


def param_shardings(params: Any, logical_axes: Any, mesh: Mesh, *, fsdp: bool) -> Any:
  """`NamedSharding`s of the parameters from their logical axis names.

  Args:
    params: the parameter tree (arrays or `jax.ShapeDtypeStruct`s).
    logical_axes: `pats_jax.models.logical_axes(pretrained)`, same structure.
    mesh: the device mesh.
    fsdp: shard the model dimension of every matrix over mesh axis "fsdp". Vectors (biases,
      LayerNorm scales: one axis besides a stacked "layers" axis) stay replicated: sharding
      them saves a few KiB per chip, and costs an all-gather per use in the forward and the
      backward pass, and a reduction of a rows-split activation onto a split vector that
      XLA can only do by replicating the activation ("Involuntary full rematerialization").

  Returns:
    A tree of `NamedSharding` like `params`.
  """
  from pats_jax import models

  rules = models.axis_rules(fsdp=fsdp)
  vector_rules = models.axis_rules(fsdp=False)

  def sharding(spec: PartitionSpec, leaf: Any) -> NamedSharding:
    names = tuple(spec)
    vector = len([name for name in names if name != models.sharding.LAYERS]) < 2
    mesh_spec = nn.logical_to_mesh_axes(names, vector_rules if vector else rules)
    return NamedSharding(mesh, _divisible(mesh_spec, tuple(leaf.shape), mesh))

  return jax.tree.map(
    sharding, logical_axes, params, is_leaf=lambda x: isinstance(x, PartitionSpec)
  )


def _path_keys(path: tuple[Any, ...]) -> tuple[str, ...]:
  return tuple(str(entry.key) for entry in path if isinstance(entry, jax.tree_util.DictKey))


def state_shardings(abstract_state: Any, params: Any, shardings: Any, mesh: Mesh) -> Any:
  """Shardings of an optimizer (or train) state: a leaf takes the sharding of the parameter
  whose dict path is a suffix of its own and whose shape it has; other leaves are replicated.

  Args:
    abstract_state: the state, e.g. `jax.eval_shape(tx.init, params)`.
    params: the parameter tree.
    shardings: `param_shardings(params, ...)`.
    mesh: the device mesh.

  Returns:
    A tree of `NamedSharding` like `abstract_state`.
  """
  by_path = {}
  for (path, leaf), sharding in zip(
    jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(shardings), strict=True
  ):
    by_path[_path_keys(path)] = (tuple(leaf.shape), sharding)

  def sharding_of(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
    keys = _path_keys(path)
    for start in range(len(keys)):
      shape_and_sharding = by_path.get(keys[start:])
      if shape_and_sharding and shape_and_sharding[0] == tuple(leaf.shape):
        return shape_and_sharding[1]
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(sharding_of, abstract_state)


def put_global(tree: Any, shardings: Any) -> Any:
  """Places host values (identical on every process) onto global `shardings`."""

  def put(value: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(value, jax.Array) and jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
      return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree, shardings)


def global_batch(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
  """Assembles each process's rows into global arrays (`jax.make_array_from_process_local_data`)."""
  return {
    name: jax.make_array_from_process_local_data(sharding, value) for name, value in batch.items()
  }

"""TPU slices by name, and their devices from the TPU compiler (libtpu) without a TPU attached.

A slice is named as Cloud TPU names it, `<generation>-<N>` (`v5e-256`, `v5litepod-16`,
`v6e-8`: N chips; `v4-32`, `v5p-128`: N TensorCores, two per chip), or as a topology,
`<generation>:<shape>` (`v5e:2x2`, `v5e:16x16`, `v4:2x2x2`: chips along each axis). A named
size takes Cloud TPU's default shape: 2D generations double the shorter side from 1x1 (4: 2x2,
8: 2x4, 16: 4x4, ..., 256: 16x16), 3D ones the smallest axis, the last of equals first, from
2x2x1 (8 chips: 2x2x2, 16: 2x2x4, 32: 2x4x4, 64: 4x4x4, ...). Other shapes are given as
topologies.

Hosts follow each generation (`tpu_chips`): a slice of up to `single_host_chips` is one host
(v5e and v6e: 2x4 and smaller; v4 and v5p: 2x2x1); larger ones are hosts of `host_bounds`
chips (2x2x1 for all four).

`topology_devices(slice)` loads libtpu (the `jax[tpu]` extra) and returns the slice's devices,
which `jax.jit(...).lower(...).compile()` compiles for while the process runs on its CPU.
libtpu holds a lock file in the temporary folder while loaded; `ALLOW_MULTIPLE_LIBTPU_LOAD=1`
(set here unless already set) lets several compile-only processes load it at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.metadata
import importlib.util
import math
import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

from pats_jax.training.tpu_chips import GENERATIONS, TpuGeneration, generation

_NAMED = re.compile(r"^([a-z0-9]+)-(\d+)$")
_TOPOLOGY = re.compile(r"^([a-z0-9]+):(\d+(?:x\d+)*)$")
_LIBTPU_LOCK = "libtpu multi-process lockfile"


class SliceError(ValueError):
  """A slice name that names no TPU slice; the message lists the valid names."""


class LibtpuError(RuntimeError):
  """libtpu is missing or cannot be loaded; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Slice:
  """A TPU slice: a generation and its chips' shape.

  Attributes:
    generation: the chip generation.
    shape: chips along each axis of the torus (2 or 3 axes).
  """

  generation: TpuGeneration
  shape: tuple[int, ...]

  @property
  def chips(self) -> int:
    return math.prod(self.shape)

  @property
  def topology(self) -> str:
    """The topology name libtpu takes, e.g. `v5e:2x2`."""
    return f"{self.generation.name}:{'x'.join(map(str, self.shape))}"

  @property
  def name(self) -> str:
    """The Cloud TPU name, e.g. `v5e-4` or `v4-32` (TensorCores for v4 and v5p)."""
    gen = self.generation
    units = self.chips * (gen.tensorcores_per_chip if gen.name_counts == "cores" else 1)
    return f"{gen.name}-{units}"

  @property
  def chips_per_host_bounds(self) -> tuple[int, int, int]:
    """The chips of one host along each axis: the whole slice when it fits one host."""
    if self.chips <= self.generation.single_host_chips:
      return (*self.shape, 1, 1)[:3]
    return self.generation.host_bounds

  @property
  def hosts(self) -> int:
    return self.chips // math.prod(self.chips_per_host_bounds)


def default_shape(gen: TpuGeneration, chips: int) -> tuple[int, ...] | None:
  """Cloud TPU's default shape of a slice of `chips` chips (module docstring), or None."""
  if chips < 1 or chips > gen.max_chips or chips & (chips - 1):
    return None  # Named sizes are powers of two; others are given as topologies.
  if gen.torus_dims == 2:
    if chips == 2:
      return None
    shape = [1, 1]
  elif chips < 4:
    return None
  else:
    shape = [2, 2, 1]
  while math.prod(shape) < chips:
    smallest = min(shape)
    shape[max(i for i, side in enumerate(shape) if side == smallest)] *= 2
  return tuple(shape)


def default_slices(gen: TpuGeneration) -> list[Slice]:
  """The slices of `gen` that Cloud TPU names by size, smallest first."""
  sizes = (2**power for power in range(gen.max_chips.bit_length()))
  shapes = (default_shape(gen, chips) for chips in sizes)
  return [Slice(gen, shape) for shape in shapes if shape is not None]


def _chips_of(gen: TpuGeneration, units: int) -> int:
  """The chips of a slice named `<gen>-<units>`."""
  return units // gen.tensorcores_per_chip if gen.name_counts == "cores" else units


def _closest(text: str, gen: TpuGeneration | None, chips: int | None) -> str | None:
  """The valid name nearest to `text`: of `gen`, the size nearest `chips`; else by spelling."""
  if gen is not None and chips:
    slices = default_slices(gen)
    nearest = min(slices, key=lambda s: (abs(math.log2(s.chips / chips)), -s.chips))
    return nearest.topology if ":" in text else nearest.name
  names = [
    name
    for generation_ in GENERATIONS.values()
    for slice_ in default_slices(generation_)
    for name in (slice_.name, slice_.topology)
  ]
  close = difflib.get_close_matches(text.lower(), names, n=1, cutoff=0.6)
  return close[0] if close else None


def _unknown(
  text: str, reason: str, gen: TpuGeneration | None = None, chips: int | None = None
) -> SliceError:
  """The error for `text`: why, the closest valid name, and examples of valid ones."""
  close = _closest(text, gen, chips)
  hint = f" Did you mean {close}?" if close else ""
  examples = "; ".join(
    f"{slices[0].name}, {slices[1].name}, ..., {slices[-1].name}"
    for slices in map(default_slices, GENERATIONS.values())
  )
  return SliceError(
    f"--compile_for={text}: {reason}.{hint} Name a slice as Cloud TPU does ({examples}; v4 "
    "and v5p count TensorCores, two per chip, v5e and v6e count chips) or as a topology of "
    "chips (v5e:2x2, v5e:16x16, v4:2x2x2)."
  )


def parse_slice(text: str) -> Slice:
  """The slice named `text` (module docstring).

  Raises:
    SliceError: `text` names no slice; the message gives the closest valid name and examples.
  """
  text = text.strip()
  named, topology = _NAMED.match(text.lower()), _TOPOLOGY.match(text.lower())
  match = named or topology
  if match is None:
    raise _unknown(text, "not a slice name")
  gen = generation(match.group(1))
  if gen is None:
    raise _unknown(
      text, f"unknown TPU generation {match.group(1)!r} (known: {', '.join(GENERATIONS)})"
    )
  if named:
    units = int(named.group(2))
    shape = default_shape(gen, _chips_of(gen, units))
    if shape is None or Slice(gen, shape).name != f"{gen.name}-{units}":
      reason = f"{gen.name} has no slice of {units} {gen.name_counts}"
      raise _unknown(text, reason, gen, max(_chips_of(gen, units), 1))
    return Slice(gen, shape)
  shape = tuple(int(side) for side in topology.group(2).split("x"))
  if gen.torus_dims == 2 and len(shape) == 3 and shape[2] == 1:
    shape = shape[:2]
  chips = max(math.prod(shape), 1)
  if len(shape) != gen.torus_dims:
    raise _unknown(text, f"{gen.name} slices have {gen.torus_dims} axes", gen, chips)
  if min(shape) < 1:
    raise _unknown(text, "every axis needs at least one chip", gen, chips)
  slice_ = Slice(gen, shape)
  if slice_.chips > gen.max_chips:
    reason = f"{gen.name} slices have at most {gen.max_chips} chips"
    raise _unknown(text, reason, gen, chips)
  bounds = slice_.chips_per_host_bounds
  if any(side % bound for side, bound in zip((*shape, 1, 1)[:3], bounds, strict=True)):
    host = "x".join(map(str, bounds))
    reason = f"{chips} chips cannot be split into {gen.name} hosts of {host} chips"
    raise _unknown(text, reason, gen, chips)
  return slice_


def install_hint() -> str:
  """How to install the TPU compiler (libtpu) matching the installed jax."""
  import jax

  return (
    f'pip install -e ".[tpu]" in a checkout of this project, or pip install '
    f'"jax[tpu]=={jax.__version__}" (the libtpu built for jax {jax.__version__})'
  )


def libtpu_version() -> str:
  """The installed libtpu's version, or "unknown"."""
  try:
    return importlib.metadata.version("libtpu")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
  """Silences what libtpu writes to stderr while it starts (no TPU here, it warns of that)."""
  with tempfile.TemporaryFile() as sink:
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
      yield
    finally:
      os.dup2(saved, 2)
      os.close(saved)


def topology_devices(slice_: Slice) -> list[Any]:
  """The devices of `slice_`, from libtpu, for compiling on this machine (no TPU needed).

  Raises:
    LibtpuError: libtpu is not installed, or cannot be loaded (its lock file is held).
    SliceError: libtpu does not accept the slice.
  """
  try:
    import libtpu  # noqa: F401
  except ImportError:
    if not os.environ.get("TPU_LIBRARY_PATH"):
      raise LibtpuError(
        f"--compile_for needs the TPU compiler, libtpu, which is not installed: {install_hint()}."
      ) from None
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  from jax.experimental import topologies

  try:
    with _quiet_stderr():
      topology = topologies.get_topology_desc(
        platform="tpu",
        topology_name=slice_.topology,
        chip_config_name=slice_.generation.chip_config,
        chips_per_host_bounds=slice_.chips_per_host_bounds,
        num_slices=1,
      )
  except RuntimeError as error:
    message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    if _LIBTPU_LOCK in message:
      raise LibtpuError(
        f"libtpu could not take its lock file in {tempfile.gettempdir()}: another process "
        "holds it, and ALLOW_MULTIPLE_LIBTPU_LOAD="
        f"{os.environ.get('ALLOW_MULTIPLE_LIBTPU_LOAD')} did not let this one share it. Wait "
        f"for that process, or remove a stale {tempfile.gettempdir()}/libtpu_lockfile. "
        f"({message})"
      ) from None
    if "not installed" in message:
      raise LibtpuError(f"libtpu cannot be loaded ({message}): {install_hint()}.") from None
    raise SliceError(f"--compile_for={slice_.topology}: libtpu refused it: {message}") from None
  return list(topology.devices)

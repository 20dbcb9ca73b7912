"""NVIDIA GPUs by name, and their devices from the CUDA compiler without a GPU attached.

The jax CUDA plugin (`pip install "jax[cuda12]==<jax version>"`) compiles for a GPU that it is
told about rather than one it finds: `jax.experimental.topologies.get_topology_desc` with
platform "cuda" takes a `GpuTargetConfig` text proto (the card's compute capability, SM count,
clock, memory, bandwidth, caches and limits) and gives compile-only devices, for which
`jax.jit(...).lower(...).compile()` runs XLA's GPU pipeline on the CPU at hand: fusion, GEMM
and cuDNN rewrites, scheduling, PTX and cubin generation. Autotuning needs a GPU and is
skipped, so GEMMs take the compiler's default choice (Triton GEMM fusions on Hopper). The
program is what the card would run, not a measurement.

`target_devices(card)` returns those devices for a card of `CARDS`. The plugin checks at
start that the CUDA libraries fit a GPU's driver; with no GPU there is nothing to check
against, so `JAX_SKIP_CUDA_CONSTRAINTS_CHECK=1` is set unless already set.

Sources for the cards (public NVIDIA data sheets "H100 Tensor Core GPU" and "H200 Tensor Core
GPU", SXM form factor, and the CUDA programming guide's table for compute capability 9.0):
132 SMs at a 1.98 GHz boost clock; 228 KiB shared memory per SM (227 KiB per block opt-in,
48 KiB by default), 65,536 registers per SM and per block, 2,048 threads per SM, 1,024 per
block, warps of 32; a 50 MiB L2; 989 TFLOP/s dense bfloat16. The H100 has 80 GB HBM3 at
3.35 TB/s, the H200 141 GB HBM3e at 4.8 TB/s (the same chip: the compiled programs differ only
where memory size or bandwidth enter the compiler's choices). Memory sizes are what the driver
reports (81,559 MiB and 143,771 MiB).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
from typing import Any

# The jax CUDA plugins (`jax_plugins.xla_cuda12` for jax[cuda12], ...cuda13 for jax[cuda13]).
_PLUGINS = ("jax_plugins.xla_cuda12", "jax_plugins.xla_cuda13")
_SKIP_CHECK = "JAX_SKIP_CUDA_CONSTRAINTS_CHECK"
MIB = 2**20


class CudaPluginError(RuntimeError):
  """The jax CUDA plugin is missing or refused the target; the message says what to do."""


class GpuNameError(ValueError):
  """A GPU name that names no card of `CARDS`; the message lists them."""


@dataclasses.dataclass(frozen=True)
class GpuCard:
  """One NVIDIA GPU, as the CUDA compiler needs to know it (the module docstring's figures).

  Attributes:
    name: the short name (`h100`).
    device_name: the name the driver reports, which the devices carry as `device_kind`.
    compute_capability: (major, minor).
    sm_count: streaming multiprocessors.
    clock_ghz: the boost clock.
    memory_bytes: device memory the driver reports.
    memory_bytes_per_second: memory bandwidth.
    l2_cache_bytes: the L2 cache.
    peak_bf16_flops: dense bfloat16 tensor-core peak, FLOP/s.
  """

  name: str
  device_name: str
  compute_capability: tuple[int, int]
  sm_count: int
  clock_ghz: float
  memory_bytes: int
  memory_bytes_per_second: float
  l2_cache_bytes: int
  peak_bf16_flops: float

  def target_config(self, cudnn: tuple[int, int, int] | None = None) -> str:
    """The card as a `GpuTargetConfig` text proto, with the cuDNN version `cudnn` (default:
    that of the installed cuDNN wheel, which the compiler consults for cuDNN's features)."""
    major, minor = self.compute_capability
    dnn_major, dnn_minor, dnn_patch = cudnn or cudnn_version()
    info = {
      "threads_per_block_limit": 1024,
      "threads_per_warp": 32,
      "shared_memory_per_block": 48 * 1024,
      "shared_memory_per_core": 228 * 1024,
      "shared_memory_per_block_optin": 227 * 1024,
      "threads_per_core_limit": 2048,
      "core_count": self.sm_count,
      "fpus_per_core": 128,
      "block_dim_limit_x": 2**31 - 1,
      "block_dim_limit_y": 65535,
      "block_dim_limit_z": 65535,
      "memory_bandwidth": int(self.memory_bytes_per_second),
      "l2_cache_size": self.l2_cache_bytes,
      "clock_rate_ghz": self.clock_ghz,
      "device_memory_size": self.memory_bytes,
      "registers_per_core_limit": 65536,
      "registers_per_block_limit": 65536,
    }
    lines = ["gpu_device_info {"]
    lines += [f"  {key}: {value}" for key, value in info.items()]
    lines += [f"  cuda_compute_capability {{ major: {major} minor: {minor} }}", "}"]
    lines += [
      'platform_name: "CUDA"',
      f"dnn_version_info {{ major: {dnn_major} minor: {dnn_minor} patch: {dnn_patch} }}",
      f'device_description_str: "{self.device_name}"',
    ]
    return "\n".join(lines) + "\n"


_HOPPER = {
  "compute_capability": (9, 0),
  "sm_count": 132,
  "clock_ghz": 1.98,
  "l2_cache_bytes": 50 * MIB,
  "peak_bf16_flops": 989e12,
}
CARDS = {
  "h100": GpuCard(
    name="h100",
    device_name="NVIDIA H100 80GB HBM3",
    memory_bytes=81559 * MIB,
    memory_bytes_per_second=3.35e12,
    **_HOPPER,
  ),
  "h200": GpuCard(
    name="h200",
    device_name="NVIDIA H200",
    memory_bytes=143771 * MIB,
    memory_bytes_per_second=4.8e12,
    **_HOPPER,
  ),
}


def parse_card(name: str) -> GpuCard:
  """The card `name` (case and an `-sxm` suffix ignored).

  Raises:
    GpuNameError: no card of that name.
  """
  key = name.strip().lower().removesuffix("-sxm")
  if key not in CARDS:
    raise GpuNameError(f"GPU {name!r} is not known; known GPUs: {', '.join(sorted(CARDS))}")
  return CARDS[key]


def cudnn_version() -> tuple[int, int, int]:
  """The installed cuDNN wheel's version (major, minor, patch); 9.8.0 when none is found."""
  for package in ("nvidia-cudnn-cu12", "nvidia-cudnn-cu13"):
    try:
      parts = importlib.metadata.version(package).split(".")
    except importlib.metadata.PackageNotFoundError:
      continue
    return int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
  return 9, 8, 0


def plugin_version() -> str | None:
  """The installed jax CUDA plugin, e.g. `jax-cuda12-plugin 0.10.2`, or None."""
  for package in ("jax-cuda12-plugin", "jax-cuda13-plugin"):
    try:
      return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
      continue
  return None


def install_hint() -> str:
  """How to install the CUDA compiler for the installed jax."""
  import jax

  return (
    f'pip install "jax[cuda12]=={jax.__version__}" (about 3 GB; no GPU is needed to compile, '
    "and a separate virtual environment keeps it apart from a CPU or TPU install)"
  )


def target_devices(card: GpuCard) -> list[Any]:
  """One compile-only device of `card` from the jax CUDA plugin (no GPU attached).

  Raises:
    CudaPluginError: the plugin is not installed, or it refused the target.
  """
  if not any(_has(plugin) for plugin in _PLUGINS):
    raise CudaPluginError(
      f"compiling for a GPU needs the jax CUDA plugin, which is not installed: {install_hint()}."
    )
  os.environ.setdefault(_SKIP_CHECK, "1")
  from jax.experimental import topologies

  try:
    topology = topologies.get_topology_desc(
      card.name, "cuda", target_config=card.target_config(), topology="1x1x1"
    )
  except (RuntimeError, NotImplementedError) as error:
    message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    raise CudaPluginError(
      f"the jax CUDA plugin did not make a {card.device_name} target ({message}); it needs "
      f"{_SKIP_CHECK}=1 without a GPU, and a plugin of the installed jax's version: "
      f"{install_hint()}."
    ) from None
  return list(topology.devices)


def _has(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:
    return False

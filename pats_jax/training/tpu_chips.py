"""What each Cloud TPU generation offers per chip, and how its slices are named and hosted.

The dry run (`train.py --compile_for=...`, `pats_jax.training.dry_run`) compares a compiled
step's memory with a chip's HBM, turns the TPU compiler's cycle estimates into time at the
chip's clock, and relates the analytic FLOPs to the chip's peak.

Sources (public Cloud TPU documentation, "TPU v4", "TPU v5e", "TPU v5p" and "TPU v6e" pages
of cloud.google.com/tpu/docs, read for these figures):

- v4: 2 TensorCores per chip, 4 MXUs each; 275 TFLOP/s bf16 peak per chip; HBM2 32 GiB,
  1200 GB/s; 4 chips per host; 3D slices named by TensorCores (v4-32: 16 chips, 2x2x4).
- v5e: 1 TensorCore per chip, 4 MXUs; 197 TFLOP/s bf16; HBM2 16 GiB, 819 GB/s; up to 8 chips
  per host VM (a 2x4 slice can be one VM; larger slices are VMs of 2x2 chips, one JAX process
  each); 2D slices of up to 256 chips, named by chips (v5litepod-256, 16x16).
- v5p: 2 TensorCores per chip, 4 MXUs each; 459 TFLOP/s bf16; HBM2e 95 GiB, 2765 GB/s; 4 chips
  per host; 3D slices named by TensorCores (v5p-128: 64 chips, 4x4x4).
- v6e: 1 TensorCore per chip; 918 TFLOP/s bf16; HBM 32 GiB, 1640 GB/s; like v5e, up to 8 chips
  per VM (larger slices: VMs of 2x2 chips) and 2D slices of up to 256 chips named by chips
  (v6e-8: 2x4, one VM).

The MXUs are 128x128 systolic arrays (256x256 on v6e). The clock is not in those tables: it is
derived from the peak, one multiply-add (2 FLOPs) per MXU cell per cycle,

  clock = peak bf16 FLOP/s / (TensorCores x MXUs per TensorCore x MXU size² x 2),

e.g. v5e: 197e12 / (1 x 4 x 128² x 2) = 1.50 GHz. For v6e the page has said both 2 and 4 MXUs
per TensorCore; 4 (1.75 GHz) is used, since 2 would need a 3.5 GHz clock. HBM sizes are taken
as GiB (the pages write GB and GiB for the same parts); the TPU compiler reserves part of it,
and its own limit is reported when a program does not fit.
"""

from __future__ import annotations

import dataclasses

GIB = 2**30


@dataclasses.dataclass(frozen=True)
class TpuGeneration:
  """One Cloud TPU generation.

  Attributes:
    name: the generation in topology and slice names (`v5e` in `v5e:2x2`, `v5e-256`).
    aliases: other names of its slices (`v5litepod` in `v5litepod-256`).
    hbm_bytes: HBM per chip.
    hbm_bytes_per_second: HBM bandwidth per chip.
    peak_bf16_flops: peak dense bfloat16 FLOP/s per chip.
    tensorcores_per_chip: TensorCores per chip (two run as one JAX device, "megacore").
    mxus_per_tensorcore: matrix units per TensorCore.
    mxu_size: the side of an MXU's systolic array.
    torus_dims: the dimensions of a slice's shape (2 for `16x16`, 3 for `4x4x4`).
    host_bounds: the chips of each host (VM, one JAX process) of a multi-host slice, per axis.
    single_host_chips: the most chips one host holds; a slice up to this size is one host.
    name_counts: what N of a slice name `<name>-N` counts: "chips" or "cores" (TensorCores).
    max_chips: the largest slice, in chips.
    chip_config: libtpu's chip configuration of a JAX device ("megacore": both TensorCores).
  """

  name: str
  aliases: tuple[str, ...]
  hbm_bytes: int
  hbm_bytes_per_second: float
  peak_bf16_flops: float
  tensorcores_per_chip: int
  mxus_per_tensorcore: int
  mxu_size: int
  torus_dims: int
  host_bounds: tuple[int, int, int]
  single_host_chips: int
  name_counts: str
  max_chips: int
  chip_config: str

  @property
  def clock_hz(self) -> float:
    """The clock that gives the peak: one multiply-add per MXU cell and cycle."""
    cells = self.tensorcores_per_chip * self.mxus_per_tensorcore * self.mxu_size**2
    return self.peak_bf16_flops / (2 * cells)


GENERATIONS: dict[str, TpuGeneration] = {
  "v4": TpuGeneration(
    name="v4",
    aliases=(),
    hbm_bytes=32 * GIB,
    hbm_bytes_per_second=1200e9,
    peak_bf16_flops=275e12,
    tensorcores_per_chip=2,
    mxus_per_tensorcore=4,
    mxu_size=128,
    torus_dims=3,
    host_bounds=(2, 2, 1),
    single_host_chips=4,
    name_counts="cores",
    max_chips=4096,
    chip_config="megacore",
  ),
  "v5e": TpuGeneration(
    name="v5e",
    aliases=("v5litepod",),
    hbm_bytes=16 * GIB,
    hbm_bytes_per_second=819e9,
    peak_bf16_flops=197e12,
    tensorcores_per_chip=1,
    mxus_per_tensorcore=4,
    mxu_size=128,
    torus_dims=2,
    host_bounds=(2, 2, 1),
    single_host_chips=8,
    name_counts="chips",
    max_chips=256,
    chip_config="default",
  ),
  "v5p": TpuGeneration(
    name="v5p",
    aliases=(),
    hbm_bytes=95 * GIB,
    hbm_bytes_per_second=2765e9,
    peak_bf16_flops=459e12,
    tensorcores_per_chip=2,
    mxus_per_tensorcore=4,
    mxu_size=128,
    torus_dims=3,
    host_bounds=(2, 2, 1),
    single_host_chips=4,
    name_counts="cores",
    max_chips=6144,
    chip_config="megacore",
  ),
  "v6e": TpuGeneration(
    name="v6e",
    aliases=(),
    hbm_bytes=32 * GIB,
    hbm_bytes_per_second=1640e9,
    peak_bf16_flops=918e12,
    tensorcores_per_chip=1,
    mxus_per_tensorcore=4,
    mxu_size=256,
    torus_dims=2,
    host_bounds=(2, 2, 1),
    single_host_chips=8,
    name_counts="chips",
    max_chips=256,
    chip_config="default",
  ),
}


def generation(name: str) -> TpuGeneration | None:
  """The generation named `name` or one of its aliases (case-insensitive), else None."""
  name = name.lower()
  for gen in GENERATIONS.values():
    if name == gen.name or name in gen.aliases:
      return gen
  return None

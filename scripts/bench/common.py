r"""What every benchmark shares: model shapes, random models and batches, the environment header,
interleaved timing, the analytic FLOP count and the figures file.

Timing protocol (`time_interleaved`): the variants of one benchmark are built and compiled
first, then timed in rounds, one call of each variant per round, the order rotated from round
to round, so that a change of machine load hits every variant alike. Reported per variant:
the median, minimum and maximum call time, and against the baseline variant both the ratio
of the medians and the median of the per-round ratios `t_variant / t_baseline` (the steadier
of the two on a shared machine).

FLOPs for MFU (`train_step_flops`) are counted analytically, never from XLA's cost analysis:
`pats_jax.models.flops` gives the count and its derivation. The shapes are those of known
checkpoints (`pats_jax.models.known`), without their weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import inspect
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pats_jax import models
from pats_jax.models import known, tiny
from pats_jax.models.config import ModelConfig
from pats_jax.models.flops import train_step_flops as train_step_flops  # re-exported

# The config.json keys that fix a BERT's shape (and so its cost).
SHAPE_KEYS = (
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "intermediate_size",
  "max_position_embeddings",
  "type_vocab_size",
)
# The benchmark shapes: config.json fields of known checkpoints (`pats_jax.models.known`).
# "tiny" is `pats_jax.models.tiny.tiny_config`, for the benchmarks' own tests.
SHAPE_CHECKPOINTS = {
  "bert-base": "google-bert/bert-base-uncased",
  "bert-large": "google-bert/bert-large-uncased",
  "minilm": "sentence-transformers/all-MiniLM-L6-v2",
}
SHAPES = ("tiny", *SHAPE_CHECKPOINTS)

# Peak dense FLOP/s per device kind, (bfloat16, float32), for MFU. Vendor data sheets (SXM).
PEAK_FLOPS = {
  "H100": (989e12, 67e12),
  "H200": (989e12, 67e12),
  "A100": (312e12, 19.5e12),
  "L4": (121e12, 30e12),
}
VERSIONED = ("pats_jax", "jax", "jaxlib", "flax", "optax", "torch", "transformers")


def shape_config(name: str) -> dict[str, int]:
  """The config.json shape keys of the shape `name` (one of `SHAPES`)."""
  hf = tiny.tiny_config() if name == "tiny" else known.known_config(SHAPE_CHECKPOINTS[name])
  config = ModelConfig.from_hf_dict(hf, num_labels=2)
  return {key: getattr(config, key) for key in SHAPE_KEYS}


def supports_scan_layers() -> bool:
  """Whether `pats_jax.models.load` takes `scan_layers` (the layers stacked under `nn.scan`)."""
  return "scan_layers" in inspect.signature(models.load).parameters


def trainer_supports_scan_layers() -> bool:
  """`supports_scan_layers()` and the trainer's config has `model_config.scan_layers`."""
  return supports_scan_layers() and "scan_layers" in trainer_config("plain").model_config


def load_random_model(
  shape: str,
  *,
  dtype: Any = jnp.float32,
  num_labels: int = 2,
  scan_layers: bool | int = False,
  folder: str | os.PathLike | None = None,
  **load_kwargs: Any,
) -> models.Pretrained:
  """A random BERT of the shape `shape`, written as a checkpoint and loaded as the trainer does.

  Timing does not depend on the weights' values. `folder` keeps the checkpoint (e.g. for
  torch to load the same one); by default it goes to a temporary folder. `scan_layers` is
  passed on to `models.load` only when it is set (see `supports_scan_layers`): True, or an int of
  layers per loop iteration (`models.layer_layout`).
  """
  if scan_layers:
    load_kwargs["scan_layers"] = scan_layers
  with tempfile.TemporaryDirectory() as tmp:
    path = tiny.write_tiny_checkpoint(
      pathlib.Path(folder or tmp) / shape,
      num_labels=num_labels,
      tokenizer=False,
      **shape_config(shape),
    )
    return models.load(path, num_labels=num_labels, dtype=dtype, **load_kwargs)


def random_batch(vocab_size: int, batch_size: int, length: int, seed: int = 0) -> dict[str, Any]:
  """A full-length batch (two segments) of random token ids with binary labels, on the device."""
  rng = np.random.default_rng(seed)
  half = length // 2
  types = np.concatenate([np.zeros((batch_size, half)), np.ones((batch_size, length - half))], 1)
  return {
    "input_ids": jnp.asarray(rng.integers(5, vocab_size, (batch_size, length)), jnp.int32),
    "attention_mask": jnp.ones((batch_size, length), jnp.int32),
    "token_type_ids": jnp.asarray(types, jnp.int32),
    "labels": jnp.asarray(rng.integers(0, 2, (batch_size,)), jnp.int32),
  }


def trainer_config(method: str, **pats_overrides: Any) -> Any:
  """`configs/glue.py` for `method`: the trainer's clipping, schedule and dropout."""
  from configs import glue

  config = glue.get_config(f"task=rte,method={method}")
  for key, value in pats_overrides.items():
    config.pats[key] = value
  return config


def jitted_train_step(
  pretrained: models.Pretrained, config: Any, *, num_updates: int = 1000
) -> tuple[Callable, Any]:
  """The trainer's train step for `config`, jitted with its state donated, and a fresh state.

  The step is `pats_jax.training.steps.make_train_step` with the optimizer
  `pats_jax.training.optimizers.make_optimizer` builds from `config`. Each call gets its
  own copy of the parameters, since the state is donated.
  """
  from pats_jax.training import optimizers, steps

  optimizer = optimizers.make_optimizer(config, num_updates)
  step = steps.make_train_step(
    pretrained.module,
    optimizer,
    seed=config.seed,
    regression=False,
    # As the trainer builds it on one GPU.
    norms_after_update=jax.default_backend() == "gpu",
    grouped_reductions=jax.default_backend() == "gpu",
  )
  params = jax.tree.map(jnp.copy, pretrained.params)
  state = jax.jit(steps.init_state, static_argnums=1)(params, optimizer.tx)
  return jax.jit(step, donate_argnums=0), state


def glue_dir(flag: str) -> pathlib.Path:
  """`--glue_dir`, else `$GLUE_DIR`, else `./glue_data`; exits with a message when absent."""
  path = pathlib.Path(flag or os.environ.get("GLUE_DIR") or "glue_data").expanduser()
  if not path.is_dir():
    sys.exit(
      f"GLUE folder {str(path)!r} not found: pass --glue_dir or set GLUE_DIR to a glue_data "
      "folder (download_glue_data.py layout, e.g. glue_data/SST-2/train.tsv)"
    )
  return path


def compile_timed(jitted: Any, *args: Any) -> tuple[Any, float]:
  """`jitted.lower(*args).compile()` and its wall time in seconds (tracing included)."""
  t0 = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - t0


# --- FLOPs and MFU ----------------------------------------------------------------------------


def peak_flops(dtype: Any) -> float | None:
  """The first device's peak dense FLOP/s for `dtype` when it is a GPU in `PEAK_FLOPS`."""
  device = jax.devices()[0]
  if device.platform != "gpu":
    return None
  for kind, (bf16, fp32) in PEAK_FLOPS.items():
    if kind in device.device_kind:
      return bf16 if jnp.dtype(dtype) == jnp.bfloat16 else fp32
  return None


# --- Environment ------------------------------------------------------------------------------


def cpu_name() -> str:
  """`lscpu`'s model name, or the platform's processor string."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor() or "unknown"
  for line in out.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def gpu_description() -> str | None:
  """`nvidia-smi`'s name, memory and driver of each GPU, or None without one."""
  try:
    out = subprocess.run(
      ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
      capture_output=True,
      text=True,
      check=True,
      timeout=30,
    ).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  return "; ".join(line.strip() for line in out.splitlines() if line.strip()) or None


def command_line() -> str:
  """The command that started this process, in its `python -m` form."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
  return " ".join([program, *map(shlex.quote, sys.argv[1:])])


def load_average() -> str:
  """The 1, 5 and 15 minute load averages."""
  return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(*, backend: bool = True) -> dict[str, str]:
  """Hardware, software versions, date and command of this run (and JAX's devices)."""
  env = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "command": command_line(),
    "cpu": f"{cpu_name()}, {os.cpu_count()} logical CPUs",
    "load average": load_average(),
    "gpu": gpu_description() or "none",
    "python": platform.python_version(),
  }
  if backend:
    device = jax.devices()[0]
    env["jax devices"] = f"{jax.device_count()} x {device.platform} {device.device_kind}"
  for name in VERSIONED:
    try:
      env[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      env[name] = "absent"
  return env


# --- Figures and printing ---------------------------------------------------------------------


class Report:
  """Prints a benchmark's header and results, and keeps its figures for `--json`."""

  def __init__(self, question: str):
    self.figures: dict[str, Any] = {"question": question, "environment": environment()}
    print(f"# {question}")
    for key, value in self.figures["environment"].items():
      print(f"# {key}: {value}")

  def add(self, key: str, value: Any) -> None:
    """Records a figure under `key`."""
    self.figures[key] = value

  def finish(self, path: str | None) -> dict[str, Any]:
    """Prints the end load average; writes the figures as JSON to `path` when given."""
    self.figures["load average at the end"] = load_average()
    print(f"# load average at the end: {self.figures['load average at the end']}")
    if path:
      pathlib.Path(path).write_text(json.dumps(self.figures, indent=1, default=str) + "\n")
    return self.figures


def parser(doc: str) -> argparse.ArgumentParser:
  """An argument parser described by the first paragraph of `doc`, with `--json PATH`."""
  result = argparse.ArgumentParser(
    description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  result.add_argument("--json", default="", help="also write the figures to this JSON file")
  return result


def add_shape_arguments(parser: argparse.ArgumentParser, *, batch_sizes: bool = False) -> None:
  """`--shape`, `--dtype` (compute), `--batch_size` (several with `batch_sizes`), `--length`."""
  parser.add_argument("--shape", choices=SHAPES, default="minilm")
  parser.add_argument(
    "--dtype", choices=["float32", "bfloat16"], default="float32", help="compute dtype"
  )
  if batch_sizes:
    parser.add_argument("--batch_size", type=int, nargs="+", default=[32])
  else:
    parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)


# --- Interleaved timing -----------------------------------------------------------------------


@dataclasses.dataclass
class Timing:
  """Call times in seconds per variant, one entry per round, and the baseline's name."""

  times: dict[str, list[float]]
  baseline: str | None

  def summary(self, *, items_per_call: float = 1.0) -> dict[str, dict[str, float]]:
    """Per variant: median/min/max ms, items per second of the median, and the ratios.

    `time_ratio` is median / baseline's median; `round_ratio` the median over rounds of
    the round's time / the baseline's time in the same round (both > 1 means slower).
    """
    rows = {}
    for name, times in self.times.items():
      median = statistics.median(times)
      row = {
        "median_ms": 1e3 * median,
        "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times),
        "per_second": items_per_call / median,
      }
      if self.baseline is not None:
        base = self.times[self.baseline]
        row["time_ratio"] = median / statistics.median(base)
        row["round_ratio"] = statistics.median(t / b for t, b in zip(times, base, strict=True))
      rows[name] = row
    return rows


def time_interleaved(
  variants: Mapping[str, Callable[[], Any]],
  *,
  rounds: int,
  warmup: int = 1,
  baseline: str | None = None,
) -> Timing:
  """Times `variants` in `warmup` untimed and then `rounds` timed rounds, interleaved.

  Each round calls every variant once, in an order rotated by one each round (so no variant
  always follows the same one). A call's result is waited for with
  `jax.block_until_ready`; a variant that runs outside JAX must wait for its own work.
  """
  names = list(variants)
  times: dict[str, list[float]] = {name: [] for name in names}
  for index in range(warmup + rounds):
    shift = index % len(names)
    for name in names[shift:] + names[:shift]:
      t0 = time.perf_counter()
      jax.block_until_ready(variants[name]())
      if index >= warmup:
        times[name].append(time.perf_counter() - t0)
  return Timing(times, baseline if baseline in times else None)


def print_summary(
  rows: Mapping[str, Mapping[str, float]], *, unit: str = "calls/s", baseline: str | None = None
) -> None:
  """A table of `Timing.summary()` rows; the ratio columns appear with a baseline."""
  head = f"{'variant':<24} {'median ms':>10} {'min ms':>9} {'max ms':>9} {unit:>12}"
  if baseline:
    head += f" {'time/' + baseline:>14} {'per-round':>10}"
  print(head)
  for name, row in rows.items():
    line = (
      f"{name:<24} {row['median_ms']:10.2f} {row['min_ms']:9.2f} {row['max_ms']:9.2f} "
      f"{row['per_second']:12.2f}"
    )
    if baseline and "time_ratio" in row:
      line += f" {row['time_ratio']:14.3f} {row['round_ratio']:10.3f}"
    print(line)

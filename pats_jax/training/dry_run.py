r"""A run's steps compiled for a TPU slice on the CPU at hand: `train.py --compile_for=<slice>`.

`abstract_run(config, slice)` builds what the trainer builds (`steps.build_run_steps`: the
optimizer, the shardings of the config's mesh, the jitted train, eval and PATS-statistics
steps) on a mesh of the slice's devices (`tpu_slices.topology_devices`: libtpu describes them,
no TPU attached), with the model's parameters, the train state and the batches as
`jax.ShapeDtypeStruct`s: no weights are read and nothing is downloaded, since the shapes of
the models the configs name are known (`pats_jax.models.known`; local folders give their
config.json, `tiny-*` models are written to a temporary folder). The batches have the config's
batch sizes and its longest length bucket, `data.max_length` (the run compiles one program per
bucket length; the longest needs the most memory and time).

`compile_run(run)` compiles the steps (after `prepare_host()`: JAX on the CPU, no compilation
cache), and `compiled_program.program_stats` reads per chip their memory, kernels, collectives
and the TPU compiler's estimated cycles. `run(config, slice_name)` prints them
with the time the estimate implies at the chip's clock and the model FLOPs utilisation (MFU)
of the analytic FLOPs (`pats_jax.models.flops`), or raises `DryRunError` when the run does not
fit a chip's HBM, the slice is unknown or libtpu is missing. Every time but the compile time is
the compiler's estimate, labelled with the libtpu version; none is a measurement. Neither a
workdir nor a cache entry is written.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import pathlib
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

import pats_jax.data as data_lib
from pats_jax import models
from pats_jax.models import known, loader
from pats_jax.models.classifier import SequenceClassifier
from pats_jax.models.config import ModelConfig
from pats_jax.models.flops import train_step_flops
from pats_jax.training import compiled_program, sharding, sources, steps, tpu_slices, validate

# The schedules' length: a constant in the compiled step, whose program does not depend on it
# (the data's size, which sets it in a real run, is not read here).
SCHEDULE_UPDATES = 1000
STEP_NAMES = ("train", "eval", "pats_stats")
_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids")
_TITLES = {"train": "train step", "eval": "eval step", "pats_stats": "PATS statistics step"}


class DryRunError(RuntimeError):
  """The dry run cannot compile the config for the slice, or the run does not fit it; the
  message says why and what to change."""


@dataclasses.dataclass(frozen=True)
class AbstractRun:
  """A run of a config on a TPU slice, without data or weights.

  Attributes:
    config: the run's config.
    slice: the TPU slice (None when compiled for another target: a GPU).
    mesh: the config's mesh over the slice's devices.
    pretrained: the model, its `params` as `jax.ShapeDtypeStruct`s.
    steps: the optimizer, shardings and jitted steps (`steps.build_run_steps`).
    state: the train state as `jax.ShapeDtypeStruct`s with their shardings.
    train_batch: a micro-batch of the longest length, as `jax.ShapeDtypeStruct`s.
    eval_batch: an evaluation batch of the longest length, likewise.
  """

  config: ml_collections.ConfigDict
  slice: tpu_slices.Slice | None
  mesh: jax.sharding.Mesh
  pretrained: models.Pretrained
  steps: steps.RunSteps
  state: steps.TrainState
  train_batch: dict[str, jax.ShapeDtypeStruct]
  eval_batch: dict[str, jax.ShapeDtypeStruct]

  @property
  def length(self) -> int:
    return self.train_batch["input_ids"].shape[1]

  @property
  def num_labels(self) -> int:
    return self.pretrained.config.num_labels

  def step_args(self, name: str) -> tuple[Callable | None, tuple[Any, ...]]:
    """The jitted step `name` (one of `STEP_NAMES`; None without PATS) and its arguments."""
    return {
      "train": (self.steps.train_step, (self.state, self.train_batch)),
      "eval": (self.steps.eval_step, (self.state.params, self.eval_batch)),
      "pats_stats": (self.steps.pats_stats, (self.state,)),
    }[name]


@dataclasses.dataclass(frozen=True)
class CompiledStep:
  """A step compiled for the slice: the program, its compile time and what it holds."""

  name: str
  compiled: Any
  seconds: float
  stats: compiled_program.ProgramStats


def prepare_host() -> None:
  """Sets JAX up for compiling for a slice here: the CPU backend, no compilation cache.

  The CPU becomes the backend unless `JAX_PLATFORMS` (or the caller) named others: the steps
  are compiled for the slice's devices from libtpu and run nowhere, and JAX would otherwise
  first try to start a TPU backend, which fails on a machine without a TPU. The persistent
  compilation cache is turned off, since the compile times are reported.
  """
  if not jax.config.jax_platforms:
    with contextlib.suppress(RuntimeError):  # Backends already started (a test session): kept.
      jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_enable_compilation_cache", False)


def num_labels(config: ml_collections.ConfigDict) -> int:
  """The classifier's outputs: the GLUE task's; for custom data 1 (regression) or 2, since the
  data, whose labels would tell, is not read (the head's width hardly changes the costs)."""
  custom = config.data.custom
  if custom.train_file:
    return 1 if custom.task_type == "regression" else 2
  return data_lib.get_task(config.task).num_labels


def _read_config_json(path: pathlib.Path) -> dict[str, Any]:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as error:
    raise DryRunError(f"cannot read the model's {path}: {error}") from None


def model_config(config: ml_collections.ConfigDict, labels: int) -> ModelConfig:
  """The `ModelConfig` of `config.model` with `labels` outputs, known without its weights.

  Local folders give their config.json, `tiny-*` models are written to a temporary folder (as
  the trainer writes them into its workdir), known hub names and ids take their shapes from
  `pats_jax.models.known`, other hub ids from a cached config.json; nothing is downloaded.

  Raises:
    DryRunError: the model's shapes cannot be known without a download.
  """
  name = config.model
  path = pathlib.Path(name).expanduser()
  if path.is_dir():
    hf, source = _read_config_json(path / "config.json"), str(path / "config.json")
  elif name.lower() in sources.TINY_MODELS:
    with tempfile.TemporaryDirectory() as folder:
      checkpoint = pathlib.Path(sources.resolve_model(name, workdir=folder))
      hf, source = _read_config_json(checkpoint / "config.json"), name
  else:
    hub_id = sources.MODEL_HUB_IDS.get(name.lower(), name)
    hf, source = known.known_config(hub_id), hub_id
    if hf is None:
      from huggingface_hub import try_to_load_from_cache

      cached = try_to_load_from_cache(hub_id, "config.json")
      if not isinstance(cached, str):
        raise DryRunError(
          f"config.model={name!r}: its shapes are not known without downloading its "
          f"config.json. Use one of {sorted(sources.MODEL_HUB_IDS)} or a local folder "
          "holding the model's config.json (--config.model=<folder>)"
        )
      hf = _read_config_json(pathlib.Path(cached))
  options = config.model_config
  try:
    return ModelConfig.from_hf_dict(
      hf,
      num_labels=labels,
      source=source,
      hidden_dropout=options.hidden_dropout,
      attention_dropout=options.attention_dropout,
    )
  except ValueError as error:
    raise DryRunError(str(error)) from None


def _batch(rows: int, length: int, sharding: Any, *, regression: bool, eval_keys: bool) -> dict:
  """The arrays of a batch (`pats_jax.data.train_batches` / `eval_batches`) as structs."""
  array = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
  batch = {key: array((rows, length), jnp.int32) for key in _TOKEN_KEYS}
  batch["labels"] = array((rows,), jnp.float32 if regression else jnp.int32)
  if eval_keys:
    batch["weights"] = array((rows,), jnp.float32)
    batch["idx"] = array((rows,), jnp.int32)
  return batch


def abstract_run(
  config: ml_collections.ConfigDict,
  slice_: tpu_slices.Slice | None,
  devices: Sequence[Any] | None = None,
  gpu_program: bool | None = None,
) -> AbstractRun:
  """The run of `config` on `slice_`, as the trainer builds it, without data or weights.

  `devices` are those to compile for when they are not the slice's from libtpu (a GPU's from
  `gpu_targets.target_devices`; then `slice_` is None). `gpu_program` is
  `steps.build_run_steps`'s (by default: whether the devices are GPUs).

  Raises:
    DryRunError: a config mistake, a mesh or batch that does not suit the slice, a model
      whose shapes are unknown, or libtpu missing.
  """
  try:
    validate.check_config(config)
    if devices is None:
      devices = tpu_slices.topology_devices(slice_)
    mesh = sharding.make_mesh(config, devices)
    validate.check_batch_sizes(config, mesh.size)
  except (ValueError, tpu_slices.LibtpuError) as error:  # ConfigError, SliceError included.
    raise DryRunError(str(error)) from None
  labels = num_labels(config)
  options = config.model_config
  shapes = model_config(config, labels)
  module = SequenceClassifier(
    shapes,
    jnp.dtype(options.dtype),
    jnp.dtype(options.param_dtype),
    options.attention,
    options.remat and options.remat_policy,
    models.layer_layout(options.scan_layers, options.get("scan_unroll", 1)),
  )
  params = loader.abstract_params(module)
  pretrained = models.Pretrained(module, params, None, shapes, [], [], config.model)
  run_steps = steps.build_run_steps(
    config,
    pretrained,
    mesh,
    num_updates=SCHEDULE_UPDATES,
    regression=labels == 1,
    gpu_program=gpu_program,
  )
  state = jax.tree.map(
    lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
    run_steps.abstract_state,
    run_steps.state_shardings,
  )
  length = config.data.max_length  # The longest bucket (`pats_jax.data.padded_length`).
  batch = lambda rows, eval_keys: _batch(
    rows, length, run_steps.batch_sharding, regression=labels == 1, eval_keys=eval_keys
  )
  return AbstractRun(
    config=config,
    slice=slice_,
    mesh=mesh,
    pretrained=pretrained,
    steps=run_steps,
    state=state,
    train_batch=batch(config.batch_size // config.grad_accum_steps, False),
    eval_batch=batch(config.eval_batch_size, True),
  )


class OutOfMemoryError(DryRunError):
  """The TPU compiler found that a step needs more HBM than a chip has."""


def compile_step(
  name: str, jitted: Callable, *args: Any, compiler_options: dict[str, Any] | None = None
) -> CompiledStep:
  """`jitted.lower(*args).compile(compiler_options)`, timed, with its `program_stats`.
  `compiler_options` are XLA's options for this compile only (`xla_gpu_...=value`).

  Raises:
    OutOfMemoryError: the compiler ran out of HBM; the message is the compiler's.
  """
  start = time.perf_counter()
  try:
    compiled = jitted.lower(*args).compile(compiler_options)
  except jax.errors.JaxRuntimeError as error:
    text = str(error).strip()
    if "RESOURCE_EXHAUSTED" not in text:
      raise
    message = text.split("RESOURCE_EXHAUSTED:", 1)[-1].strip().splitlines()[0]
    raise OutOfMemoryError(message.rstrip(".")) from None
  seconds = time.perf_counter() - start
  return CompiledStep(name, compiled, seconds, compiled_program.program_stats(compiled))


def compile_run(run: AbstractRun, names: Iterable[str] = STEP_NAMES) -> dict[str, CompiledStep]:
  """Compiles the steps `names` of `run` that it has (no `pats_stats` without PATS).

  Raises:
    OutOfMemoryError: a step needs more HBM than a chip has.
  """
  compiled = {}
  for name in names:
    jitted, args = run.step_args(name)
    if jitted is not None:
      compiled[name] = compile_step(name, jitted, *args)
  return compiled


def statistics_interval(config: ml_collections.ConfigDict) -> int:
  """The steps between two PATS-statistics steps of the trainer: it computes them on the
  logged steps (multiples of `log_every_steps`) that are multiples of `pats_stats_every_steps`,
  so on the multiples of their least common multiple (and on the last step)."""
  return math.lcm(config.log_every_steps, config.pats_stats_every_steps)


def train_step_mfu(run: AbstractRun, seconds: float) -> float:
  """The model FLOPs utilisation of a train step taking `seconds`, against the bf16 peak."""
  flops = train_step_flops(
    dataclasses.asdict(run.pretrained.config),
    batch_size=run.train_batch["input_ids"].shape[0],
    length=run.length,
    classes=run.num_labels,
  )
  return flops / run.slice.chips / seconds / run.slice.generation.peak_bf16_flops


# --- The report -------------------------------------------------------------------------------


def _bytes(count: float) -> str:
  for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
    if count >= size:
      return f"{count / size:.2f} {unit}"
  return f"{int(count)} B"


def _header(run: AbstractRun) -> list[str]:
  config, slice_ = run.config, run.slice
  shapes, chips = run.pretrained.config, slice_.chips
  parameters = sum(leaf.size for leaf in jax.tree.leaves(run.pretrained.params))
  train_rows, eval_rows = run.train_batch["labels"].shape[0], run.eval_batch["labels"].shape[0]
  options = config.model_config
  layers = "stacked (scan_layers)" if options.scan_layers else "separate"
  unroll = options.get("scan_unroll", 1)
  if options.scan_layers and unroll != 1:
    layers += ", without a loop" if unroll == 0 else f", {unroll} per loop iteration"
  return [
    f"Dry run for TPU {slice_.name} (topology {slice_.topology}: {chips} chips, "
    f"{slice_.hosts} host{'s' if slice_.hosts > 1 else ''}), compiled on this machine's CPU "
    f"by libtpu {tpu_slices.libtpu_version()} (jax {jax.__version__}); no TPU was used.",
    f"Model {config.model}: {shapes.num_hidden_layers} layers, width {shapes.hidden_size}, "
    f"{parameters:,} parameters in {options.param_dtype}, compute in {options.dtype}, layers "
    f"{layers}{f', remat {options.remat_policy}' if options.remat else ''}; "
    f"method {config.method}.",
    f"Mesh data={run.mesh.shape['data']} x fsdp={run.mesh.shape['fsdp']}; train batch "
    f"{train_rows} ({train_rows // chips} per chip) x {run.length} tokens, the longest length "
    f"bucket; eval batch {eval_rows} ({eval_rows // chips} per chip).",
    "Figures are per chip. Times other than compile times are the TPU compiler's estimates "
    f"(its estimated cycles at the {slice_.generation.clock_hz / 1e9:.2f} GHz clock of a "
    f"{slice_.generation.name} chip), not measurements; they leave out communication.",
  ]


def _section(run: AbstractRun, step: CompiledStep) -> list[str]:
  gen, tally, memory = run.slice.generation, step.stats.tally, step.stats.memory
  seconds = step.stats.estimated_seconds(gen.clock_hz)
  lines = [_TITLES[step.name]]
  if memory is not None:
    reused = f" ({_bytes(memory.aliased)} in the donated arguments)" if memory.aliased else ""
    lines.append(
      f"  memory       {_bytes(memory.total)} of {_bytes(gen.hbm_bytes)} HBM "
      f"({memory.total / gen.hbm_bytes:.1%}): arguments {_bytes(memory.arguments)}, outputs "
      f"{_bytes(memory.outputs)}{reused}, temporaries {_bytes(memory.temporaries)}, code "
      f"{_bytes(memory.code)}"
    )
  loops = "".join(
    f"; {count} loop{'s' if count > 1 else ''} of {trips} iterations"
    f"{'' if known_trips else ' (trip count unknown: 1 assumed)'}"
    for (trips, known_trips), count in sorted(collections.Counter(tally.loops).items())
  )
  unestimated = ", ".join(f"{n} {op}" for op, n in tally.unestimated.most_common(3))
  unestimated = f": {unestimated}" if unestimated else ""
  lines.append(
    f"  kernels      {tally.kernels:,} ({tally.fusions:,} fusions, "
    f"{tally.unestimated_kernels:,} without an estimate{unestimated}), {tally.scalar_ops:,} "
    f"scalar ops{loops}"
  )
  collectives = ", ".join(
    f"{kind} x{count:,} ({_bytes(tally.collective_bytes[kind])})"
    for kind, count in sorted(tally.collectives.items())
  )
  lines.append(f"  collectives  {collectives or 'none'}")
  lines.append(f"  compile      {step.seconds:.1f} s on this machine")
  estimate = f"  est. time    {seconds * 1e3:.3f} ms per call (compiler's estimate)"
  if step.name == "train" and seconds > 0:
    estimate += (
      f"; est. MFU {train_step_mfu(run, seconds):.1%} (analytic FLOPs against the "
      f"{gen.peak_bf16_flops / 1e12:.0f} TFLOP/s bf16 peak)"
    )
  lines.append(estimate)
  return lines


def _does_not_fit(run: AbstractRun, need: str) -> DryRunError:
  config, slice_ = run.config, run.slice
  rows = run.train_batch["labels"].shape[0] // slice_.chips
  fixes = [
    f"a smaller --config.batch_size (now {config.batch_size}, {rows} rows of {run.length} "
    "tokens per chip per micro-step) or more --config.grad_accum_steps"
  ]
  if config.mesh.fsdp < slice_.chips:
    fixes.append(
      f"--config.mesh.fsdp={slice_.chips} to shard the parameters and optimizer state over "
      "the chips"
    )
  if not config.model_config.remat:
    fixes.append("--config.model_config.remat=True to recompute activations")
  if config.model_config.dtype == "float32":
    fixes.append("--config.model_config.dtype=bfloat16")
  tries = fixes[0] if len(fixes) == 1 else ", ".join(fixes[:-1]) + f", or {fixes[-1]}"
  return DryRunError(
    f"the run does not fit TPU {slice_.name} ({slice_.topology}): {need}. Try {tries}."
  )


def run(config: ml_collections.ConfigDict, slice_name: str, *, out: Callable = print) -> None:
  """Compiles the steps of `config` for the slice `slice_name` and prints what they need.

  Args:
    config: the run's config (`configs/glue.py` fields).
    slice_name: a Cloud TPU slice (`v5e-256`, `v4-32`) or topology (`v5e:2x2`).
    out: where each line of the report goes.

  Raises:
    DryRunError: the slice is unknown, libtpu is missing, the config has a mistake, or the run
      does not fit a chip's HBM; the message says what to change.
  """
  try:
    slice_ = tpu_slices.parse_slice(slice_name)
  except tpu_slices.SliceError as error:
    raise DryRunError(str(error)) from None
  prepare_host()
  abstract = abstract_run(config, slice_)
  for line in _header(abstract):
    out(line)
  hbm, largest, estimated = slice_.generation.hbm_bytes, 0, {}
  for name in STEP_NAMES:
    try:
      step = compile_run(abstract, [name]).get(name)
    except OutOfMemoryError as error:
      raise _does_not_fit(abstract, f"the TPU compiler says: {error}") from None
    if step is None:
      continue
    for line in _section(abstract, step):
      out(line)
    estimated[name] = step.stats.estimated_seconds(slice_.generation.clock_hz)
    if step.stats.memory is not None:
      largest = max(largest, step.stats.memory.total)
      if step.stats.memory.total > hbm:
        need = f"the {_TITLES[name]} needs {_bytes(step.stats.memory.total)} per chip"
        raise _does_not_fit(abstract, f"{need}, a chip has {_bytes(hbm)} of HBM")
  if "pats_stats" in estimated:
    every = statistics_interval(config)
    per_step = estimated["train"] + estimated["pats_stats"] / every
    out(
      f"A training step with the PATS statistics every {every} step(s) (the logged steps, "
      f"log_every_steps={config.log_every_steps}, that are multiples of "
      f"pats_stats_every_steps={config.pats_stats_every_steps}): {per_step * 1e3:.3f} ms "
      "(compiler's estimate)."
    )
  out(f"Fits: the largest step needs {_bytes(largest)} of a chip's {_bytes(hbm)} HBM.")

"""Every field of a run's config checked before any work: one `ConfigError` naming key and value.

`check_config(config)` checks types, ranges, choices and the files a run must read; it touches
neither devices nor the network and creates nothing. `check_batch_sizes(config, num_devices)`
adds what depends on the device mesh: the micro-batch `batch_size / grad_accum_steps` and
`eval_batch_size` must split evenly over the devices. `train_and_evaluate` calls both before it
creates the workdir, so a mistake costs nothing and leaves nothing behind.
`check_data(config, spec, num_train_examples)` adds what depends on the loaded training data
(custom data: its task type and label count): a `best_metric` the task reports, and at least
one optimizer update; it runs before the model is loaded, and a workdir the run created is
removed again.

Fields a config does not have are skipped, so configs of older or smaller layouts still check.
"""

from __future__ import annotations

import difflib
import math
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections

from pats_jax import _steps, metrics
from pats_jax.data import custom, glue, tasks
from pats_jax.models.layers import ATTENTION_CHOICES
from pats_jax.models.stack import REMAT_POLICIES
from pats_jax.training import optimizers, sources

FLOAT_DTYPES = ("float32", "bfloat16", "float16")
DISTRIBUTED_INIT = ("auto", "yes", "no")
_MISSING = object()


class ConfigError(ValueError):
  """A config field has a wrong type, value or combination; the message names key and value."""


def _fail(key: str, value: Any, expected: str) -> ConfigError:
  return ConfigError(f"config.{key}={value!r}: {expected} (set --config.{key}=...)")


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
  node: Any = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _MISSING
    node = node[part]
  return node


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer(low: int, high: int | None = None, *, also: Sequence[int] = ()) -> Callable:
  """An integer in [low, high] (or one of `also`)."""
  bound = f">= {low}" if high is None else f"in [{low}, {high}]"
  extra = f" or one of {list(also)}" if also else ""

  def check(key: str, value: Any) -> None:
    ok = _is_int(value) and (value in also or (value >= low and (high is None or value <= high)))
    if not ok:
      raise _fail(key, value, f"expected an integer {bound}{extra}")

  return check


def real(low: float, high: float | None = None, *, low_open=False, high_open=True) -> Callable:
  """A finite number in the interval from `low` to `high` (open or closed ends)."""
  left, right = "(" if low_open else "[", ")" if high_open else "]"
  interval = f"{left}{low}, {'inf' if high is None else high}{right}"

  def check(key: str, value: Any) -> None:
    ok = _is_real(value)
    if ok:
      ok = value > low if low_open else value >= low
    if ok and high is not None:
      ok = value < high if high_open else value <= high
    if not ok:
      raise _fail(key, value, f"expected a finite number in {interval}")

  return check


def optional(check: Callable) -> Callable:
  """`check`, or None (the field's placeholder: "use the default")."""

  def optional_check(key: str, value: Any) -> None:
    if value is not None:
      check(key, value)

  return optional_check


def choice(options: Sequence[str]) -> Callable:
  """One of `options`."""

  def check(key: str, value: Any) -> None:
    if value not in options:
      raise _fail(key, value, f"expected one of {', '.join(repr(o) for o in options)}")

  return check


def boolean(key: str, value: Any) -> None:
  """True or False."""
  if not isinstance(value, bool):
    raise _fail(key, value, "expected True or False")


def text(key: str, value: Any) -> None:
  """A string (possibly empty)."""
  if not isinstance(value, str):
    raise _fail(key, value, "expected a string")


def non_empty_text(key: str, value: Any) -> None:
  """A non-empty string."""
  if not isinstance(value, str) or not value:
    raise _fail(key, value, "expected a non-empty string")


def existing_file_or_empty(key: str, value: Any) -> None:
  """ "" or the path of an existing file."""
  text(key, value)
  if value and not pathlib.Path(value).expanduser().is_file():
    raise _fail(key, value, "no such file; give the path of an existing file, or ''")


def data_dir(key: str, value: Any) -> None:
  """ "" (search), "tiny" (synthetic) or an existing folder."""
  text(key, value)
  if value and value != sources.TINY_DATA and not pathlib.Path(value).expanduser().is_dir():
    raise _fail(
      key,
      value,
      f"no such folder; give a glue_data folder, '' to search {sources.GLUE_SEARCH_TEXT}, or "
      f"'{sources.TINY_DATA}' for a synthetic one",
    )


def model(key: str, value: Any) -> None:
  """A known name, a hub id (`owner/name`) or an existing local folder."""
  non_empty_text(key, value)
  path = pathlib.Path(value).expanduser()
  looks_like_path = value.startswith(("/", "./", "../", "~")) or value.count("/") > 1
  if looks_like_path and not path.is_dir():
    raise _fail(key, value, "no such folder; give a model name, a hub id or a checkpoint folder")
  if (path / "config.json").exists() or not path.is_dir():
    return
  raise _fail(key, value, "this folder has no config.json; give a Hugging Face checkpoint folder")


def glue_task(key: str, value: Any) -> None:
  """A GLUE task with a training split."""
  trainable = sorted(name for name, spec in tasks.GLUE_TASKS.items() if spec.train_split)
  try:
    spec = tasks.get_task(value)
  except (KeyError, ValueError, TypeError):
    spec = None
  if spec is None or not spec.train_split:
    raise _fail(key, value, f"expected a GLUE task with training data: {', '.join(trainable)}")


def float_dtype(key: str, value: Any) -> None:
  """A floating-point dtype name."""
  choice(FLOAT_DTYPES)(key, value)


# Every field of configs/glue.py and its check, in the order of that file.
CHECKS: dict[str, Callable[[str, Any], None]] = {
  "model": model,
  "seed": integer(0),
  "data.data_dir": data_dir,
  "data.source": choice(glue.SOURCES),
  "data.cache_dir": text,
  "data.max_length": integer(2),
  "data.bucket_multiple": integer(1),
  "data.custom.train_file": existing_file_or_empty,
  "data.custom.dev_file": existing_file_or_empty,
  "data.custom.text_column": non_empty_text,
  "data.custom.text_pair_column": text,
  "data.custom.label_column": non_empty_text,
  "data.custom.task_type": choice(custom.TASK_TYPES),
  "model_config.dtype": float_dtype,
  "model_config.param_dtype": float_dtype,
  "model_config.attention": choice(ATTENTION_CHOICES),
  "model_config.remat": boolean,
  "model_config.remat_policy": choice(tuple(REMAT_POLICIES)),
  "model_config.scan_layers": boolean,
  "model_config.scan_unroll": integer(0),
  "model_config.hidden_dropout": optional(real(0.0, 1.0)),
  "model_config.attention_dropout": optional(real(0.0, 1.0)),
  "num_epochs": integer(1),
  "max_steps": integer(1, also=(-1,)),
  "batch_size": integer(1),
  "eval_batch_size": integer(1),
  "grad_accum_steps": integer(1),
  "learning_rate": real(0.0, low_open=True),
  "warmup_ratio": real(0.0, 1.0),
  "weight_decay": real(0.0),
  "adam_b1": real(0.0, 1.0),
  "adam_b2": real(0.0, 1.0),
  "adam_eps": real(0.0, low_open=True),
  "grad_clip_norm": real(0.0),
  "apply_if_finite": boolean,
  "max_consecutive_nonfinite": integer(1),
  "method": choice(optimizers.METHODS),
  "tag": text,
  "pats.noise_scale": real(0.0),
  "pats.noise_schedule": choice(optimizers.NOISE_SCHEDULES),
  "pats.beta1": real(0.0, 1.0),
  "pats.beta2": optional(real(0.0, 1.0)),
  "pats.sensitivity": choice(_steps.SENSITIVITIES),
  "pats.normalize": choice(_steps.NORMALIZATIONS),
  "pats.direction": choice(_steps.DIRECTIONS),
  "pats.distribution": choice(_steps.DISTRIBUTIONS),
  "pats.noise_on_embeddings": boolean,
  "pats.ema_dtype": choice(("", *FLOAT_DTYPES)),
  "pats.statistics": choice(_steps.STATISTICS),
  "pats.key_impl": choice(optimizers.KEY_IMPLS),
  "dropout_key_impl": choice(optimizers.KEY_IMPLS),
  "noisytune.scale": real(0.0),
  "sage.beta3": real(0.0, 1.0),
  "sage.scaled_leaves": choice(tuple(optimizers.SAGE_SCALED_LEAVES)),
  "sage.scale_weight_decay": boolean,
  "add_noise.eta": real(0.0),
  "add_noise.gamma": real(0.0),
  "best_metric": text,
  "eval_every_steps": integer(0, also=(-1,)),
  "log_every_steps": integer(1),
  "pats_stats_every_steps": integer(1),
  "checkpoint_every_steps": integer(0),
  "keep_checkpoints": integer(1),
  "write_test_predictions": boolean,
  "tensorboard": boolean,
  "progress_bar": boolean,
  "mesh.data": integer(1, also=(-1,)),
  "mesh.fsdp": integer(1),
  "distributed.initialize": choice(DISTRIBUTED_INIT),
  "distributed.coordinator_address": text,
  "distributed.num_processes": integer(0),
  "distributed.process_id": integer(0, also=(-1,)),
  "distributed.cpu_collectives": text,
}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks every field of `config` and their combinations; creates and downloads nothing.

  Args:
    config: a run's config (the fields of `configs/glue.py`).

  Raises:
    ConfigError: the first field with a wrong type, value or combination, with the fix.
  """
  for key, check in CHECKS.items():
    value = _get(config, key)
    if value is not _MISSING:
      check(key, value)
  train_file = _get(config, "data.custom.train_file")
  if not train_file or train_file is _MISSING:
    glue_task("task", _get(config, "task"))
    check_best_metric(config, tasks.get_task(config.task))
  elif not _get(config, "data.custom.dev_file"):
    raise ConfigError(
      f"config.data.custom.train_file={train_file!r} needs a dev file: set "
      "--config.data.custom.dev_file to the file to evaluate on"
    )
  check_rank_on_sharded_leaves(config)
  check_one_pass_normalization(config)
  policy = _get(config, "model_config.remat_policy")
  if policy not in (_MISSING, "full") and not config.model_config.remat:
    raise ConfigError(
      f"config.model_config.remat_policy={policy!r} applies only with remat: set "
      "--config.model_config.remat=True, or leave remat_policy at 'full'"
    )
  unroll = _get(config, "model_config.scan_unroll")
  if unroll not in (_MISSING, 1) and not config.model_config.scan_layers:
    raise ConfigError(
      f"config.model_config.scan_unroll={unroll!r} applies only to stacked layers: set "
      "--config.model_config.scan_layers=True, or leave scan_unroll at 1"
    )
  batch_size, accum = config.batch_size, config.grad_accum_steps
  if batch_size % accum:
    raise ConfigError(
      f"config.batch_size={batch_size} is not a multiple of config.grad_accum_steps={accum}: "
      "each optimizer update averages grad_accum_steps equal micro-batches"
    )


def _pats_normalization(config: ml_collections.ConfigDict) -> Any:
  """The `normalize` a PATS method's run uses (its variant's, else `pats.normalize`); None
  for a method without PATS."""
  method = _get(config, "method")
  if method not in optimizers.PATS_VARIANTS:
    return None
  return optimizers.PATS_VARIANTS[method].get("normalize", _get(config, "pats.normalize"))


def check_one_pass_normalization(config: ml_collections.ConfigDict) -> None:
  """Refuses `pats.statistics=previous` with `pats.normalize=rank` for a PATS method: a rank
  needs this step's whole matrix before any of its noise, which one pass cannot give.

  Raises:
    ConfigError: that combination.
  """
  if _pats_normalization(config) == "rank" and _get(config, "pats.statistics") == "previous":
    raise ConfigError(
      "config.pats.statistics='previous' cannot rank: a rank needs this step's whole matrix "
      "first; set --config.pats.normalize=minmax, or leave pats.statistics at 'current'"
    )


def check_rank_on_sharded_leaves(config: ml_collections.ConfigDict) -> None:
  """Refuses `pats.normalize=rank` on a mesh that shards the parameters (`mesh.fsdp > 1`).

  The rank of an element within its matrix needs the whole matrix sorted: on a sharded leaf
  every chip would first gather the whole matrix (and its importance), the memory and traffic
  that FSDP is there to avoid. "minmax" needs only each shard's min and max, reduced across
  the shards with a few bytes per matrix.

  Raises:
    ConfigError: a PATS method with `pats.normalize=rank` and `mesh.fsdp > 1`.
  """
  fsdp = _get(config, "mesh.fsdp")
  if _pats_normalization(config) == "rank" and _is_int(fsdp) and fsdp > 1:
    raise ConfigError(
      f"config.pats.normalize='rank' with config.mesh.fsdp={fsdp}: the rank sorts each whole "
      "matrix, which a chip holding one shard of it cannot do without gathering it; set "
      "--config.pats.normalize=minmax, or --config.mesh.fsdp=1"
    )


def check_batch_sizes(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Checks that the micro-batch and the eval batch split evenly over `num_devices`.

  Args:
    config: a run's config, already through `check_config`.
    num_devices: the devices of the run's mesh (all processes).

  Raises:
    ConfigError: a batch size is not a multiple of `num_devices`.
  """
  micro_batch = config.batch_size // config.grad_accum_steps
  sizes = {
    f"batch_size / grad_accum_steps = {config.batch_size} / {config.grad_accum_steps}": micro_batch,
    f"eval_batch_size = {config.eval_batch_size}": config.eval_batch_size,
  }
  for name, size in sizes.items():
    if size % num_devices:
      raise ConfigError(
        f"config.{name} is not a multiple of the {num_devices} devices; choose batch sizes "
        f"divisible by {num_devices}, or use fewer devices (--config.mesh.data)"
      )


def check_best_metric(config: ml_collections.ConfigDict, spec: tasks.TaskSpec) -> None:
  """Checks that `config.best_metric` is "" (the task's own) or a metric the task reports.

  Args:
    config: a run's config.
    spec: its task; the metrics it reports are `pats_jax.metrics.metric_names(spec)`.

  Raises:
    ConfigError: a name the task's evaluation does not report, with the names it does.
  """
  value = _get(config, "best_metric")
  if value is _MISSING or value == "":
    return
  names = metrics.metric_names(spec)
  if value not in names:
    close = difflib.get_close_matches(str(value), names, n=1)
    raise _fail(
      "best_metric",
      value,
      f"task {spec.name!r} reports {', '.join(repr(name) for name in names)}; give one of "
      f"them, or '' for the task's own ({spec.best_metric!r})"
      + (f"; did you mean {close[0]!r}?" if close else ""),
    )


def check_data(
  config: ml_collections.ConfigDict, spec: tasks.TaskSpec, num_train_examples: int
) -> None:
  r"""Checks what depends on the loaded training data, before the model is loaded.

  A run makes $U = \lfloor E \lfloor n / m \rfloor / A \rfloor$ optimizer updates, with $n$
  training examples, micro-batch $m$ = `batch_size / grad_accum_steps`, $E$ = `num_epochs` and
  $A$ = `grad_accum_steps` (the last incomplete micro-batch of an epoch is dropped); it needs
  $U \ge 1$.

  Args:
    config: a run's config, already through `check_config`.
    spec: the task of the loaded data (custom data: its task type and label count).
    num_train_examples: the examples of the training split.

  Raises:
    ConfigError: an unknown `best_metric`, or data too small for one optimizer update.
  """
  check_best_metric(config, spec)
  accum = config.grad_accum_steps
  micro_batch = config.batch_size // accum
  micro_batches = config.num_epochs * (num_train_examples // micro_batch)
  if num_train_examples < micro_batch:
    raise ConfigError(
      f"the training data of task {spec.name!r} has {num_train_examples} examples, fewer than "
      f"one micro-batch (config.batch_size / config.grad_accum_steps = {config.batch_size} / "
      f"{accum} = {micro_batch}), so no training step can run: set --config.batch_size to at "
      f"most {num_train_examples * accum}, or give more training data"
    )
  if micro_batches < accum:
    raise ConfigError(
      f"the training data of task {spec.name!r} ({num_train_examples} examples) gives "
      f"{micro_batches} micro-batch(es) of {micro_batch} in config.num_epochs="
      f"{config.num_epochs}, fewer than the config.grad_accum_steps={accum} of one optimizer "
      "update: raise --config.num_epochs, or lower --config.grad_accum_steps"
    )

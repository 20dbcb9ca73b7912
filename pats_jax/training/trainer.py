"""`train_and_evaluate(config, workdir)`: fine-tune, evaluate, checkpoint, resume exactly.

The loop runs micro-steps t = start, ..., T-1 over epochs of `pats_jax.data.train_batches`;
the data position is (t // batches_per_epoch, t % batches_per_epoch), so a checkpoint's step
fixes where the data continues. A background thread (`prefetch.Prefetcher`) reads, pads and
places the next two batches on the devices while a step runs; the metrics of a logged step are
read after the next step is dispatched, so the host never waits on the device except at
evaluations and checkpoints.

Preemption (`checkpointing.PreemptionFlag`). A SIGTERM is caught from the moment the process
count is known, before the workdir is opened or anything is loaded. During start-up it stops the
run at once: nothing is written, and a workdir this start created is removed, as after any failed
start. During training the step under way finishes, then the checkpoint is written before
anything else, also before an evaluation that is due (the checkpoint records that it is due; a
rerun does it first, so its results equal an uninterrupted run's), and the run exits. An
evaluation under way is abandoned for the checkpoint. After the last step (final evaluation,
test predictions) the final checkpoint is already written: the run stops at once without
results.json, and a rerun evaluates that checkpoint. Each returns `{"preempted": step,
"message": ...}`.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

import pats_jax.data as data_lib
from pats_jax import metrics as metrics_lib
from pats_jax import models
from pats_jax.training import (
  checkpointing,
  optimizers,
  prefetch,
  sharding,
  sources,
  steps,
  validate,
  writers,
)
from pats_jax.training import workdir as workdir_lib


@dataclasses.dataclass
class TaskData:
  """The splits of a run (`datasets.Dataset`s, later `TokenizedSplit`s) and its task."""

  spec: data_lib.TaskSpec
  train: Any
  dev: dict[str, Any]
  test: dict[str, Any]


def load_model(config: ml_collections.ConfigDict, workdir: pathlib.Path, num_labels: int):
  """Loads `config.model` (`pats_jax.models.load`), saying what to install when it cannot."""
  source = sources.resolve_model(config.model, workdir=workdir)
  options = config.model_config
  try:
    return models.load(
      source,
      num_labels=num_labels,
      dtype=jnp.dtype(options.dtype),
      param_dtype=jnp.dtype(options.param_dtype),
      seed=config.seed,
      attention=options.attention,
      remat=options.remat and options.remat_policy,
      scan_layers=models.layer_layout(options.scan_layers, options.get("scan_unroll", 1)),
      hidden_dropout=options.hidden_dropout,
      attention_dropout=options.attention_dropout,
    )
  except (OSError, ImportError, ConnectionError) as error:
    raise sources.SourceError(sources.model_help(config.model, source, error)) from error
  except models.CheckpointError as error:  # The message names the file and the problem.
    raise sources.SourceError(f"config.model={config.model!r}: {error}") from error


def load_task_data(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> TaskData:
  """Loads the training, dev and (GLUE) test splits of the run's task, or of a custom dataset."""
  custom = config.data.custom
  if custom.train_file:
    if not custom.dev_file:
      raise ValueError("config.data.custom.dev_file is empty; a custom run needs a dev file")
    options = {
      "text_column": custom.text_column,
      "label_column": custom.label_column,
      "text_pair_column": custom.text_pair_column or None,
      "task_type": custom.task_type,
    }
    try:
      train, spec = data_lib.load_custom(custom.train_file, **options)
      dev, _ = data_lib.load_custom(custom.dev_file, label_names=spec.label_names, **options)
    except (OSError, ValueError) as error:  # The message names the file, line and value.
      raise sources.SourceError(str(error)) from error
    return TaskData(spec, train, {"validation": dev}, {})
  spec = data_lib.get_task(config.task)
  data_dir = sources.resolve_glue_dir(config.data.data_dir, workdir=workdir)

  def load(split: str) -> Any:
    try:
      return data_lib.load_glue(spec, split, source=config.data.source, data_dir=data_dir)
    except (FileNotFoundError, ConnectionError, OSError) as error:
      raise sources.SourceError(sources.data_help(spec.name, data_dir, error)) from error
    except ValueError as error:  # A malformed file: the message names the file and line.
      raise sources.SourceError(str(error)) from error

  train = load(spec.train_split)
  dev = {split: load(split) for split in spec.dev_splits}
  test = {}
  if config.write_test_predictions:
    for split in spec.test_splits:
      try:
        test[split] = load(split)
      except RuntimeError as error:
        logging.warning(
          "No %s/%s split (%s); no test predictions for it.", spec.name, split, error.__cause__
        )
  return TaskData(spec, train, dev, test)


def load_sources(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> tuple[TaskData, Any]:
  """Loads the data and the model; when either is missing, says what to set for both.

  A model that cannot be found is reported before any data is read or written (`tiny` data is
  written into the workdir), and the model is loaded only once the data is there and fits the
  config (`validate.check_data`: else a `validate.ConfigError`).
  """
  errors, task, pretrained = [], None, None
  if not sources.model_findable(config.model):
    errors.append(sources.SourceError(sources.model_help(config.model)))
  if not errors or config.data.data_dir != sources.TINY_DATA:
    try:
      task = load_task_data(config, workdir)
    except RuntimeError as error:
      errors.append(error)
  if not errors:
    validate.check_data(config, task.spec, len(task.train))
    try:
      pretrained = load_model(config, workdir, task.spec.num_labels)
    except RuntimeError as error:
      errors.append(error)
  if errors:
    message = "\n".join(str(error) for error in errors)
    raise sources.SourceError(message) from errors[0].__cause__
  return task, pretrained


def tokenize_task(task: TaskData, tokenizer: Any, config: ml_collections.ConfigDict) -> TaskData:
  """Tokenises every split of `task` (`pats_jax.data.tokenize`)."""

  def tokenize(dataset: Any, split: str) -> data_lib.TokenizedSplit:
    return data_lib.tokenize(
      dataset,
      tokenizer,
      task.spec,
      max_length=config.data.max_length,
      cache_dir=config.data.cache_dir or None,
      split=split,
    )

  return TaskData(
    task.spec,
    tokenize(task.train, "train"),
    {split: tokenize(dataset, split) for split, dataset in task.dev.items()},
    {split: tokenize(dataset, split) for split, dataset in task.test.items()},
  )


def _fetch(tree: Any) -> Any:
  """Device values to host numpy, gathering the rows of every process."""
  if jax.process_count() > 1:
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def predict(
  eval_step: Any,
  params: Any,
  split: data_lib.TokenizedSplit,
  config: ml_collections.ConfigDict,
  batch_sharding: Any,
) -> dict[str, np.ndarray]:
  """Predictions, labels and idx of every example of `split`, in `idx` order."""
  outputs = [
    eval_step(params, sharding.global_batch(batch, batch_sharding))
    for batch in data_lib.eval_batches(
      split,
      batch_size=config.eval_batch_size,
      max_length=config.data.max_length,
      bucket_multiple=config.data.bucket_multiple,
      process_index=jax.process_index(),
      process_count=jax.process_count(),
    )
  ]
  host = _fetch(outputs)
  joined = {key: np.concatenate([output[key] for output in host]) for key in host[0]}
  real = joined["weights"] > 0
  order = np.argsort(joined["idx"][real], kind="stable")
  return {key: joined[key][real][order] for key in ("predictions", "labels", "idx")}


def evaluate(
  eval_step: Any,
  params: Any,
  task: TaskData,
  config: ml_collections.ConfigDict,
  batch_sharding: Any,
) -> dict[str, float]:
  """Dev metrics as `{"<split>/<metric>": value}`."""
  results = {}
  for split_name, split in task.dev.items():
    out = predict(eval_step, params, split, config, batch_sharding)
    scores = metrics_lib.glue_metrics(task.spec, out["predictions"], out["labels"])
    results.update({f"{split_name}/{name}": float(value) for name, value in scores.items()})
  return results


class NonFiniteLossError(FloatingPointError):
  """The training loss or gradients became NaN or infinite (`steps` says which steps count)."""


def _check_finite(
  metrics: dict[str, Any],
  config: ml_collections.ConfigDict,
  step: int,
  checkpoint_dir: pathlib.Path,
  last_saved: int | None,
) -> None:
  """Raises `NonFiniteLossError` when the run must stop because of non-finite steps."""
  consecutive = int(metrics["consecutive_nonfinite"])
  if config.apply_if_finite:
    if consecutive < config.max_consecutive_nonfinite:
      return
    reason = f"{consecutive} consecutive steps had a non-finite loss or gradients (all skipped)"
  elif int(metrics["nonfinite_steps"]) == 0:
    return
  else:
    reason = "the loss or the gradients became NaN or infinite"
  kept = (
    f"the last good checkpoint (step {last_saved}) in {checkpoint_dir} is intact"
    if last_saved is not None
    else "no checkpoint was written"
  )
  raise NonFiniteLossError(
    f"Training stopped at step {step}: {reason}; {kept}. Lower config.learning_rate, keep "
    "config.grad_clip_norm > 0, or set config.apply_if_finite=True to skip such steps."
  )


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str | pathlib.Path,
  *,
  allow_config_change: Sequence[str] = (),
) -> dict[str, Any]:
  """Fine-tunes `config.model` on `config.task`, resuming from the workdir's newest checkpoint.

  The workdir is locked for the run and must hold no other run: see `workdir.RunDirectory`.

  Args:
    config: the run's config (`configs/glue.py` fields).
    workdir: the run's folder: checkpoints, config.json, metrics.jsonl, results.json.
    allow_config_change: config fields that may differ from those the workdir's run was
      started with (`workdir.FREE_FIELDS` may always differ).

  Returns:
    The contents of results.json (final and best dev metrics, ...), or `{"preempted": step,
    "message": text}` when a SIGTERM stopped the run (the module docstring): `step` is that
    of the checkpoint written, or None when it stopped before training started.

  Raises:
    NonFiniteLossError: the loss became non-finite (the last good checkpoint is kept).
    validate.ConfigError: a config mistake, or a workdir that cannot take this run
      (`workdir.WorkdirError`: locked, another run's config, not writable;
      `checkpointing.CheckpointMismatchError`, `checkpointing.CheckpointWriteError`).
  """
  with (
    checkpointing.PreemptionFlag() as preemption,
    workdir_lib.RunDirectory(workdir, config, allow_config_change=allow_config_change) as run,
  ):
    try:
      return _train_and_evaluate(config, run, preemption)
    except checkpointing.Preempted:
      logging.warning("SIGTERM before training started: stopped; nothing was written.")
      message = (
        "Preempted before training started: nothing was written (a workdir this start created "
        "is removed; existing checkpoints are as they were). Rerun the same command to start "
        "or resume."
      )
      return {"preempted": None, "message": message}


def _train_and_evaluate(
  config: ml_collections.ConfigDict,
  run: workdir_lib.RunDirectory,
  preemption: checkpointing.PreemptionFlag,
) -> dict[str, Any]:
  """The body of `train_and_evaluate`, in the workdir `run` (released by the caller).

  Raises:
    checkpointing.Preempted: a SIGTERM before the first step (nothing was written).
  """
  workdir = run.path
  start_time = time.perf_counter()
  validate.check_config(config)
  sharding.maybe_initialize_distributed(config)
  preemption.start()  # A SIGTERM is caught from here on.
  try:
    mesh = sharding.make_mesh(config)
  except ValueError as error:
    raise validate.ConfigError(str(error)) from None
  validate.check_batch_sizes(config, mesh.size)
  # Lock the workdir (created if new) and compare the configs before reading anything in it;
  # a workdir this run created is removed again if the run does not start.
  run.open()
  preemption.interrupt_at_once(True)  # Until the loop, a SIGTERM stops the run at once.
  task, pretrained = load_sources(config, workdir)
  task = tokenize_task(task, pretrained.tokenizer, config)
  regression = task.spec.num_labels == 1
  best_metric_name = f"{next(iter(task.dev))}/{config.best_metric or task.spec.best_metric}"

  micro_batch = config.batch_size // config.grad_accum_steps
  batches_per_epoch = data_lib.num_train_batches(task.train, micro_batch)
  total_steps = config.num_epochs * batches_per_epoch
  stop_step = min(total_steps, config.max_steps) if config.max_steps > 0 else total_steps
  # The optimizer, shardings and jitted steps; then the initial or restored state.
  run_steps = steps.build_run_steps(
    config,
    pretrained,
    mesh,
    num_updates=total_steps // config.grad_accum_steps,
    regression=regression,
  )
  optimizer, abstract = run_steps.optimizer, run_steps.abstract_state
  state_shardings, batch_sharding = run_steps.state_shardings, run_steps.batch_sharding
  train_step, eval_step, pats_stats = (
    run_steps.train_step,
    run_steps.eval_step,
    run_steps.pats_stats,
  )
  checkpointer = checkpointing.Checkpointer(
    workdir / "checkpoints", max_to_keep=config.keep_checkpoints, owner=True
  )
  best_checkpointer = checkpointing.Checkpointer(workdir / "best", max_to_keep=1, owner=True)
  state, best, last_saved, eval_due = _restore_or_init(
    checkpointer,
    config,
    pretrained.params,
    optimizer,
    abstract,
    state_shardings,
    batches_per_epoch,
  )
  start_step = int(state.step)
  run.record_start(resumed_from=last_saved)

  if pats_stats is not None and start_step < stop_step:
    pats_stats(state)  # Compiled before the loop, not after its first step: no pause there.
  # From here a SIGTERM lets the step under way finish and the loop save first.
  preemption.interrupt_at_once(False)
  eval_every = batches_per_epoch if config.eval_every_steps == -1 else config.eval_every_steps
  writer = writers.MetricWriter(workdir, start_step=start_step, tensorboard=config.tensorboard)
  progress = writers.Progress(
    total=stop_step,
    initial=start_step,
    batch_size=config.batch_size // config.grad_accum_steps,
    enabled=config.progress_bar,
  )
  final_metrics, pending = None, None

  def save(step: int, *, evaluation_due: bool = False) -> None:
    nonlocal last_saved
    _check_finite(
      _fetch(
        {
          "nonfinite_steps": state.nonfinite_steps,
          "consecutive_nonfinite": state.consecutive_nonfinite,
        }
      ),
      config,
      step,
      checkpointer.directory,
      last_saved,
    )
    epoch, batch_in_epoch = divmod(step, batches_per_epoch)
    checkpointer.save(
      step,
      state,
      {
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "seed": config.seed,
        "best": best,
        "eval_due": evaluation_due,
      },
    )
    last_saved = step

  def evaluate_at(step: int) -> None:
    """Evaluates the state after `step`, logs it and keeps it if best; a SIGTERM during the
    evaluation raises `Preempted` (nothing written)."""
    nonlocal best, final_metrics
    with preemption.interrupting():
      metrics = evaluate(eval_step, state.params, task, config, batch_sharding)
    writer.write(step, metrics, prefix="eval")
    logging.info("Step %d dev metrics: %s", step, metrics)
    if best["value"] is None or metrics[best_metric_name] > best["value"]:
      best = {"value": metrics[best_metric_name], "step": step, "metrics": metrics}
      best_checkpointer.save(step, {"params": state.params}, {"step": step, "best": best})
    final_metrics = metrics

  def report(step: int, metrics: Any, stats: Any) -> None:
    values = _fetch({**metrics, **stats})
    writer.write(step, values)
    _check_finite(values, config, step, checkpointer.directory, last_saved)
    progress.update(step, float(values["loss"]))

  log_every, stats_every = config.log_every_steps, config.pats_stats_every_steps
  checkpoint_every = config.checkpoint_every_steps
  inputs = prefetch.Prefetcher(
    train_inputs(
      task.train, config, batch_sharding, range(start_step, stop_step), batches_per_epoch
    ),
    depth=2,
    name="train-inputs",
  )
  train_start, train_start_step = time.perf_counter(), start_step
  try:
    if eval_due:  # A SIGTERM saved this checkpoint before its evaluation: do it now.
      evaluate_at(start_step)
    for step, batch in zip(range(start_step, stop_step), inputs, strict=True):
      state, metrics = train_step(state, batch)
      done = step + 1
      logged = done % log_every == 0 or done == stop_step
      with_stats = logged and (done % stats_every == 0 or done == stop_step)
      stats = pats_stats(state) if with_stats and pats_stats is not None else {}
      if pending is not None:  # Step t-1's metrics, read while step t runs.
        report(*pending)
      pending = (done, metrics, stats) if logged else None
      evaluate_now = (eval_every > 0 and done % eval_every == 0) or done == stop_step
      stop_now = preemption.reached(done)  # A SIGTERM: save before anything else.
      if evaluate_now or stop_now or (checkpoint_every > 0 and done % checkpoint_every == 0):
        if pending is not None:  # A checkpoint's metrics are on disk before the checkpoint.
          report(*pending)
          pending = None
        if evaluate_now and not stop_now:
          try:
            evaluate_at(done)
          except checkpointing.Preempted:
            stop_now = True
        save(done, evaluation_due=evaluate_now and stop_now)
      if stop_now:
        checkpointer.close()
        logging.warning("SIGTERM: checkpoint at step %d written; exiting.", done)
        message = f"Preempted at step {done}; rerun the same command to resume."
        return {"preempted": done, "message": message}
    if pending is not None:
      report(*pending)
  finally:
    inputs.close()
    progress.close()
    writer.close()
    checkpointer.wait()
    best_checkpointer.wait()
  train_seconds = time.perf_counter() - train_start

  try:  # The final checkpoint is written: a SIGTERM stops at once, before results.json.
    if final_metrics is None:  # Resumed after the last step: evaluate the restored state.
      with preemption.interrupting():
        final_metrics = evaluate(eval_step, state.params, task, config, batch_sharding)
    submissions = _write_test_predictions(
      task, state, eval_step, best_checkpointer, config, batch_sharding, workdir, preemption
    )
  except checkpointing.Preempted:
    checkpointer.close()
    best_checkpointer.close()
    logging.warning("SIGTERM after the last step: stopped before results.json.")
    message = (
      f"Preempted after the last step, during the final evaluation or test predictions: the "
      f"final checkpoint (step {last_saved}) is written, results.json is not. Rerun the same "
      "command to evaluate it and write results.json."
    )
    return {"preempted": last_saved, "message": message}
  checkpointer.close()
  best_checkpointer.close()
  num_nonfinite = int(_fetch(state.nonfinite_steps))
  results = {
    "task": task.spec.name,
    "method": config.method,
    "seed": config.seed,
    "model": config.model,
    "steps": stop_step,
    "best_metric": best_metric_name,
    "final": {"step": stop_step, "metrics": final_metrics},
    "best": {"step": best["step"], "value": best["value"], "metrics": best["metrics"]},
    "nonfinite_steps": num_nonfinite,
    "test_predictions": [str(path) for path in submissions],
    "train_examples_per_second": (stop_step - train_start_step)
    * micro_batch
    / max(train_seconds, 1e-9),
    "wall_time_seconds": time.perf_counter() - start_time,
    "environment": writers.environment(),
  }
  writers.write_json(workdir / "results.json", results)
  logging.info("Final dev metrics (step %d): %s", stop_step, final_metrics)
  logging.info("Best %s = %s at step %s", best_metric_name, best["value"], best["step"])
  return results


def train_inputs(
  train: data_lib.TokenizedSplit,
  config: ml_collections.ConfigDict,
  batch_sharding: Any,
  steps_range: range,
  batches_per_epoch: int,
) -> Iterator[dict[str, jax.Array]]:
  """The global batches of micro-steps `steps_range`, on the devices, in the loop's order.

  Step t reads batch t % batches_per_epoch of epoch t // batches_per_epoch
  (`pats_jax.data.train_batches`), so a run resumed at step t continues with the batches an
  uninterrupted run would have used.
  """
  batches = None
  for step in steps_range:
    epoch, batch_in_epoch = divmod(step, batches_per_epoch)
    if batches is None or batch_in_epoch == 0:
      batches = data_lib.train_batches(
        train,
        batch_size=config.batch_size // config.grad_accum_steps,
        seed=config.seed,
        epoch=epoch,
        start_batch=batch_in_epoch,
        bucket_multiple=config.data.bucket_multiple,
        max_length=config.data.max_length,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
      )
    yield sharding.global_batch(next(batches), batch_sharding)


def _restore_or_init(
  checkpointer: checkpointing.Checkpointer,
  config: ml_collections.ConfigDict,
  params: Any,
  optimizer: optimizers.Optimizer,
  abstract: steps.TrainState,
  state_shardings: steps.TrainState,
  batches_per_epoch: int,
) -> tuple[steps.TrainState, dict[str, Any], int | None, bool]:
  """The newest checkpoint's (state, best, step, evaluation due), else the initial state on the
  shardings (`None` step, no evaluation due)."""
  target = jax.tree.map(
    lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s),
    abstract,
    state_shardings,
  )
  restored = checkpointer.restore_latest(target)
  if restored is None:
    params = sharding.put_global(optimizers.perturb_params(config, params), state_shardings.params)
    init = jax.jit(lambda p: steps.init_state(p, optimizer.tx), out_shardings=state_shardings)
    return init(params), {"value": None, "step": None, "metrics": {}}, None, False
  state, meta = restored
  step = int(meta["step"])
  if (meta["epoch"], meta["batch_in_epoch"]) != divmod(step, batches_per_epoch):
    raise checkpointing.CheckpointMismatchError(
      f"checkpoint {step} in {checkpointer.directory} was at epoch {meta['epoch']} batch "
      f"{meta['batch_in_epoch']}, which this config's {batches_per_epoch} batches per epoch "
      "contradict (another batch_size or dataset); nothing was moved. Rerun with the config "
      "the workdir was started with, or use a new --workdir"
    )
  logging.info("Resumed from step %d in %s.", step, checkpointer.directory)
  return state, meta["best"], step, bool(meta.get("eval_due", False))


def _write_test_predictions(
  task: TaskData,
  state: steps.TrainState,
  eval_step: Any,
  best_checkpointer: checkpointing.Checkpointer,
  config: ml_collections.ConfigDict,
  batch_sharding: Any,
  workdir: pathlib.Path,
  preemption: checkpointing.PreemptionFlag,
) -> list[pathlib.Path]:
  """Writes GLUE submission files for the test splits with the best checkpoint's parameters.

  A SIGTERM during a prediction raises `checkpointing.Preempted`; files are written whole.
  """
  if not task.test:
    return []
  params = state.params
  if best_checkpointer.latest_step() is not None:
    target = {
      "params": jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), params
      )
    }
    restored = best_checkpointer.restore_latest(target)
    params = restored[0]["params"] if restored else params
  paths = []
  for split_name, split in task.test.items():
    with preemption.interrupting():
      out = predict(eval_step, params, split, config, batch_sharding)
    if writers.is_writer():
      paths.append(
        data_lib.write_glue_submission(
          task.spec, split_name, out["predictions"], workdir / "glue_submission", indices=out["idx"]
        )
      )
  return paths

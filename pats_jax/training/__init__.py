"""The fine-tuning harness behind `train.py`: one concern per module.

- `validate`: every config field checked before any work (`ConfigError`).
- `config_docs`: the description of each config field, from the comments of the config files.
- `sources`: where the model and the GLUE data come from (local folders, packages, the hub).
- `optimizers`: the optax optimizer of a config (PATS and the baselines, schedules, clipping).
- `sharding`: the device mesh, `NamedSharding`s and multi-host initialisation.
- `steps`: the jitted train and eval steps, their per-step statistics, and `build_run_steps`.
- `checkpointing`: Orbax checkpoints that resume exactly, and the SIGTERM handler.
- `workdir`: one run per workdir (its lock) and the config of the run it holds.
- `writers`: config.json, metrics.jsonl, results.json, TensorBoard and the progress bar.
- `trainer`: `train_and_evaluate(config, workdir)`, the loop.
- `dry_run`: `train.py --compile_for=<slice>`, the run's steps compiled for a TPU slice on the
  CPU at hand; `tpu_chips` (each generation's chip), `tpu_slices` (slice names, libtpu's
  devices) and `compiled_program` (memory, kernels, collectives and estimates of a program).
"""

from pats_jax.training.trainer import train_and_evaluate

__all__ = ["train_and_evaluate"]

"""The fine-tuning harness behind `train.py`: one concern per module.

- `validate`: every config field checked before any work (`ConfigError`).
- `config_docs`: the description of each config field, from the comments of the config files.
- `sources`: where the model and the GLUE data come from (local folders, packages, the hub).
- `optimizers`: the optax optimizer of a config (PATS and the baselines, schedules, clipping).
- `sharding`: the device mesh, `NamedSharding`s and multi-host initialisation.
- `steps`: the jitted train and eval steps and their per-step statistics.
- `checkpointing`: Orbax checkpoints that resume exactly, and the SIGTERM handler.
- `workdir`: one run per workdir (its lock) and the config of the run it holds.
- `writers`: config.json, metrics.jsonl, results.json, TensorBoard and the progress bar.
- `trainer`: `train_and_evaluate(config, workdir)`, the loop.
"""

from pats_jax.training.trainer import train_and_evaluate

__all__ = ["train_and_evaluate"]

"""GLUE and custom data: loading from every source, tokenisation, batching, submissions, and a
synthetic GLUE folder for quick runs (`write_synthetic_glue`)."""

from __future__ import annotations

from pats_jax.data.batching import (
  eval_batches,
  num_eval_batches,
  num_train_batches,
  padded_length,
  train_batches,
  train_plan,
)
from pats_jax.data.custom import load_custom
from pats_jax.data.glue import load_glue, resolve_source
from pats_jax.data.hub import load_hub
from pats_jax.data.local import load_local
from pats_jax.data.submission import write_glue_submission
from pats_jax.data.synthetic import write_synthetic_glue
from pats_jax.data.tasks import GLUE_TASKS, TaskSpec, canonical_split, get_task
from pats_jax.data.tfds_source import load_tfds
from pats_jax.data.tokenize import TokenizedSplit, tokenize

__all__ = [
  "GLUE_TASKS",
  "TaskSpec",
  "TokenizedSplit",
  "canonical_split",
  "eval_batches",
  "get_task",
  "load_custom",
  "load_glue",
  "load_hub",
  "load_local",
  "load_tfds",
  "num_eval_batches",
  "num_train_batches",
  "padded_length",
  "resolve_source",
  "tokenize",
  "train_batches",
  "train_plan",
  "write_glue_submission",
  "write_synthetic_glue",
]

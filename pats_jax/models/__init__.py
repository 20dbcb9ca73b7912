"""Flax BERT and RoBERTa sequence classifiers that load Hugging Face checkpoints.

Example::

  from pats_jax import models

  pretrained = models.load("sentence-transformers/all-MiniLM-L6-v2", num_labels=2)
  batch = pretrained.tokenizer(["a pair", "of texts"], padding=True, return_tensors="np")
  logits = pretrained.module.apply(
    {"params": pretrained.params}, batch["input_ids"].astype("int32"),
    batch["attention_mask"].astype("int32"), batch["token_type_ids"].astype("int32"))
  models.save_pretrained(pretrained, pretrained.params, "out/")
"""

from __future__ import annotations

from pats_jax.models.bert import Encoder, SequenceClassifier
from pats_jax.models.config import SUPPORTED_MODEL_TYPES, ModelConfig
from pats_jax.models.loader import Pretrained, load, save_pretrained
from pats_jax.models.sharding import axis_rules, logical_axes

__all__ = [
  "SUPPORTED_MODEL_TYPES",
  "Encoder",
  "ModelConfig",
  "Pretrained",
  "SequenceClassifier",
  "axis_rules",
  "load",
  "logical_axes",
  "save_pretrained",
]

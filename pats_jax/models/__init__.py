"""Flax sequence classifiers (BERT, RoBERTa, ELECTRA, ModernBERT, DeBERTa-v3) that load Hugging
Face checkpoints.

Example::

  from pats_jax import models

  pretrained = models.load("sentence-transformers/all-MiniLM-L6-v2", num_labels=2)
  batch = pretrained.tokenizer(["a pair", "of texts"], padding=True, return_tensors="np")
  logits = pretrained.module.apply(
    {"params": pretrained.params}, batch["input_ids"].astype("int32"),
    batch["attention_mask"].astype("int32"), batch["token_type_ids"].astype("int32"))
  models.save_pretrained(pretrained, pretrained.params, "out/")

Layer layouts: by default each layer has its own subtree, `params["encoder"]["layer_{i}"]`.
`load(..., scan_layers=True)` stacks them: `params["encoder"]["layers"]` holds one leaf per
weight kind, `[num_layers, ...]` (leading logical axis "layers"), and the encoder runs the
layers as one `nn.scan` loop (XLA compiles one layer body). `stack_layers` / `unstack_layers`
convert a params-like tree between the layouts; `layer_axes` gives, per leaf, the axis that
stacks layers (0) or None; `save_pretrained` writes HF's per-layer tensors from either.
`scan_layers=k` (an int > 1) runs the stacked layers k per loop iteration, all of them without a
loop for k >= num_layers (`layer_layout` maps the config fields to that argument).
"""

from __future__ import annotations

from pats_jax.models.bert import Encoder
from pats_jax.models.classifier import SequenceClassifier
from pats_jax.models.config import ModelConfig
from pats_jax.models.convert import is_stacked, stack_layers, unstack_layers
from pats_jax.models.families import SUPPORTED_MODEL_TYPES  # Registers every family.
from pats_jax.models.layers import ATTENTION_CHOICES, joined_projections
from pats_jax.models.loader import CheckpointError, Pretrained, load, save_pretrained
from pats_jax.models.sharding import activation_sharding, axis_rules, layer_axes, logical_axes
from pats_jax.models.stack import layer_layout

__all__ = [
  "ATTENTION_CHOICES",
  "SUPPORTED_MODEL_TYPES",
  "CheckpointError",
  "Encoder",
  "ModelConfig",
  "Pretrained",
  "SequenceClassifier",
  "activation_sharding",
  "axis_rules",
  "is_stacked",
  "joined_projections",
  "layer_axes",
  "layer_layout",
  "load",
  "logical_axes",
  "save_pretrained",
  "stack_layers",
  "unstack_layers",
]

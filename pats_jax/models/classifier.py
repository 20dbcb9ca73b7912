"""The sequence classifier of every family: its encoder, then its classification head.

  logits = head(encoder(input_ids, attention_mask, token_type_ids), attention_mask)

The family (`registry.py`, by `config.model_type`) supplies both modules; their parameters are
the subtrees "encoder" and "head". The call signature is the same for every family, so the
trainer needs no change per family; a family without token types ignores `token_type_ids`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import registry
from pats_jax.models.config import ModelConfig

Dtype = Any


class SequenceClassifier(nn.Module):
  """A family's encoder with its sequence-classification head.

  `apply({"params": p}, input_ids, attention_mask, token_type_ids, deterministic=True)`
  returns float32 logits `[batch, num_labels]` (regression when num_labels == 1);
  with `return_hidden=True` it returns `(logits, last_hidden_states [batch, L, E])`.
  When the head reads the first token only (`config.pools_first_token`) and the hidden
  states are not asked for, the last layer computes the first token only: the same logits
  for less work. In training the dropout masks of that layer then have the first token's
  shape, so the draws differ from the full computation's (same distribution).

  `scan_layers=True` stacks the layers' parameters under `encoder/layers` (leaves
  `[num_layers, ...]`) and runs them with `nn.scan` (see `stack.py`); the logits are the
  same as with the per-layer layout, and dropout masks are drawn per layer in both.

  Attributes:
    config: the family's config (`ModelConfig.from_hf_dict`).
    dtype: compute dtype (e.g. bfloat16); logits are float32.
    param_dtype: dtype of the parameters.
    attention: "auto", "xla" or "cudnn" (`layers.resolve_attention`).
    remat: recompute each layer in the backward pass (True, or a `stack.REMAT_POLICIES` name).
    scan_layers: stacked layer parameters, one `nn.scan` loop; an int k > 1 runs k layers per
      iteration, and k >= the layer count no loop (`stack.py`).
  """

  config: ModelConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  attention: str = "auto"
  remat: bool | str = False
  scan_layers: bool | int = False

  @nn.compact
  def __call__(
    self,
    input_ids: jax.Array,
    attention_mask: jax.Array | None = None,
    token_type_ids: jax.Array | None = None,
    deterministic: bool = True,
    return_hidden: bool = False,
  ):
    cfg = self.config
    family = registry.get(cfg.model_type)
    if attention_mask is None:
      attention_mask = jnp.ones_like(input_ids)
    first_token_only = cfg.pools_first_token and not return_hidden
    hidden = family.encoder(
      cfg,
      self.dtype,
      self.param_dtype,
      self.attention,
      self.remat,
      self.scan_layers,
      name="encoder",
    )(input_ids, attention_mask, token_type_ids, deterministic, first_token_only)
    head = family.head(cfg, self.dtype, self.param_dtype, name="head")
    logits = head(hidden, attention_mask, deterministic=deterministic).astype(jnp.float32)
    return (logits, hidden) if return_hidden else logits

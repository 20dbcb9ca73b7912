"""Model families by config.json `model_type`: what the generic code asks a family for.

A family is one module of `pats_jax.models` (`bert.py`, `electra.py`, ...) holding a model's
layers, its checkpoint conversion (tensor specs) and its logical axis names. Its `Family`
record is registered once, in `families.py`; from then on the generic code dispatches on
`config.model_type`:

  config.json  --ModelConfig.from_hf_dict-->  family.config_class (fields, defaults, refusals)
  SequenceClassifier  = family.encoder ("encoder" subtree) + family.head ("head" subtree)
  load / save_pretrained  <-- family.tensor_specs, family.hf_prefix, family.architecture
  tiny.write_tiny_checkpoint  <-- family.tiny_config, family.tiny_tokenizer

The trainer, the optimizer and the data code know nothing of families: every family's module
has the same `apply` signature and its parameter names follow the conventions the default
weight-matrix mask relies on (`pats_jax.weight_matrix_mask`: biases are named `bias`,
normalisation parameters sit under a name containing `norm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  import flax.linen as nn

  from pats_jax.models.config import ModelConfig
  from pats_jax.models.convert import TensorSpec


@dataclasses.dataclass(frozen=True)
class Family:
  """What the generic model code needs to know of one `model_type`.

  Attributes:
    model_type: config.json's `model_type` (e.g. "bert").
    config_class: the `ModelConfig` subclass holding the family's fields; its
      `supported_or_raise` refuses config.json options the family does not implement.
    defaults: config.json key -> value for keys a config.json may omit (the defaults of
      transformers' config class); one entry per field of `config_class` read from config.json.
    encoder: Flax module class, built as `encoder(config, dtype, param_dtype, attention,
      remat, scan_layers)` and called as `(input_ids, attention_mask, token_type_ids,
      deterministic, first_token_only)` -> hidden states `[batch, length, hidden]` (or
      `[batch, 1, hidden]` with `first_token_only`). A family without token types accepts
      and ignores `token_type_ids`.
    head: classification head, built as `head(config, dtype, param_dtype)` and called as
      `(hidden, attention_mask, deterministic=...)` -> logits `[batch, num_labels]`.
    tensor_specs: config -> every tensor of `<Architecture>` and its leaf in our tree.
    hf_prefix: transformers' `base_model_prefix` ("bert"): encoder tensors are named
      `<prefix>.<name>` in a classifier checkpoint, `<name>` in a bare encoder's.
    architecture: transformers' sequence-classification class, written by `save_pretrained`.
    tiny_config: `(**overrides) -> config.json dict` of a tiny random model of the family.
    tiny_tokenizer: the tokenizer `tiny.write_tiny_checkpoint` writes: "wordpiece" or
      "byte_level_bpe".
  """

  model_type: str
  config_class: type[ModelConfig]
  defaults: Mapping[str, Any]
  encoder: type[nn.Module]
  head: Callable[..., nn.Module]
  tensor_specs: Callable[[ModelConfig], list[TensorSpec]]
  hf_prefix: str
  architecture: str
  tiny_config: Callable[..., dict[str, Any]]
  tiny_tokenizer: str = "wordpiece"


_FAMILIES: dict[str, Family] = {}


def register(*families: Family) -> None:
  """Adds families (called once, by `families.py`); a model_type can be registered once."""
  for family in families:
    if family.model_type in _FAMILIES:
      raise ValueError(f"model_type {family.model_type!r} is registered twice")
    missing = set(family.config_class.hf_fields()) - set(family.defaults)
    if missing:
      raise ValueError(f"family {family.model_type!r} has no defaults for {sorted(missing)}")
    _FAMILIES[family.model_type] = family


def model_types() -> tuple[str, ...]:
  """The registered model types, in registration order."""
  return tuple(_FAMILIES)


def find(model_type: Any) -> Family | None:
  """The family of `model_type`, or None when no family handles it."""
  return _FAMILIES.get(model_type) if isinstance(model_type, str) else None


def get(model_type: str) -> Family:
  """The family of `model_type`; ValueError naming the supported types when there is none."""
  family = find(model_type)
  if family is None:
    raise ValueError(f"model_type {model_type!r} is not supported; supported: {model_types()}")
  return family

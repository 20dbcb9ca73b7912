"""The ELECTRA family (config.json `model_type` "electra"): discriminator checkpoints such as
google/electra-base-discriminator, fine-tuned as `ElectraForSequenceClassification`.

ELECTRA's discriminator is BERT's body (`bert.py`) with embeddings of their own width
`embedding_size` (ELECTRA-small: 128 for a hidden width of 256), projected to the hidden
width when the two differ, and a two-layer head with a GELU on the first token:

  e_0 = LayerNorm(word[x] + type[s] + pos[p])                   width embedding_size
  h_0 = e_0 W_proj + b_proj   if embedding_size != hidden_size   (embeddings_project)
        e_0                   otherwise
  layers as BERT's;  logits = Dropout(gelu(Dropout(h_L,0) W_d + b_d)) W_o + b_o

Parameters beyond BERT's encoder: `encoder/embeddings_project/{kernel,bias}` `[embedding_size,
E]` (logical axes "embed_in", "embed") when the widths differ; the head is
`head/{dense,out_proj}` (`heads.TwoLayerHead`).

config.json: every `BertConfig` field, plus `embedding_size`. The `summary_*` fields configure
transformers' multiple-choice head and do not touch sequence classification, so they are
kept (written back unchanged) but not used.

References:
  Clark et al., "ELECTRA: Pre-training Text Encoders as Discriminators Rather Than
  Generators", ICLR 2020; transformers' `modeling_electra.py` (`ElectraModel`,
  `ElectraClassificationHead`) and `ElectraConfig` (names and defaults).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax

from pats_jax.models import bert, convert, heads, layers, registry
from pats_jax.models import sharding as sh


@dataclasses.dataclass(frozen=True, kw_only=True)
class ElectraConfig(bert.BertConfig):
  """ELECTRA's hyper-parameters: `BertConfig`'s and the embeddings' own width.

  Attributes:
    embedding_size: width of the embedding tables; projected to hidden_size when it differs.
  """

  embedding_size: int

  def __post_init__(self):
    super().__post_init__()
    if self.embedding_size < 1:
      raise ValueError(f"embedding_size must be >= 1, got {self.embedding_size}")


class Encoder(bert.Encoder):
  """BERT's encoder over embeddings of width `embedding_size`, projected to `hidden_size`."""

  def embed(self, input_ids, token_type_ids, position_ids, deterministic: bool) -> jax.Array:
    cfg = self.config
    x = bert.Embeddings(cfg, self.dtype, self.param_dtype, cfg.embedding_size, name="embeddings")(
      input_ids, token_type_ids, position_ids, deterministic
    )
    if cfg.embedding_size == cfg.hidden_size:
      return x
    return layers.dense(
      cfg.hidden_size,
      (sh.EMBED_IN, sh.EMBED),
      stddev=cfg.initializer_range,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="embeddings_project",
    )(x)


def tensor_specs(config: ElectraConfig) -> list[convert.TensorSpec]:
  """Every tensor of `ElectraForSequenceClassification`."""
  specs = bert.embeddings_specs()
  if config.embedding_size != config.hidden_size:
    specs += convert.linear("embeddings_project", ("encoder", "embeddings_project"))
  return specs + bert.layer_specs(config) + heads.two_layer_head_specs()


def tiny_config(**overrides) -> dict[str, Any]:
  """A small config.json dict: BERT's tiny one with embeddings of width 16 (hidden 32)."""
  return bert.tiny_config("electra", **{"embedding_size": 16, **overrides})


ELECTRA = registry.Family(
  model_type="electra",
  config_class=ElectraConfig,
  # Defaults of transformers' ElectraConfig (ELECTRA-small's sizes).
  defaults={
    **bert.BERT_DEFAULTS,
    "embedding_size": 128,
    "hidden_size": 256,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
  },
  encoder=Encoder,
  head=functools.partial(heads.TwoLayerHead, activation="gelu"),
  tensor_specs=tensor_specs,
  hf_prefix="electra",
  architecture="ElectraForSequenceClassification",
  tiny_config=tiny_config,
)

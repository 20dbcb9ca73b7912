"""The config.json shape fields of the checkpoints that configs name, known without a download.

A dry run (`train.py --compile_for=...`) and the benchmarks need a model's shapes, not its
weights: for the hub repositories below the shape fields of their config.json are written
here, and `ModelConfig.from_hf_dict` fills every other field with transformers' defaults
(dropout 0.1, GELU, ...). Keyed by hub id (`pats_jax.training.sources.MODEL_HUB_IDS` maps
the short names onto them).

The values are those of each repository's config.json on the Hugging Face hub
(sentence-transformers/all-MiniLM-L6-v2, google-bert/bert-base-uncased,
google-bert/bert-large-uncased, FacebookAI/roberta-base, FacebookAI/roberta-large,
google/electra-base-discriminator, google/electra-large-discriminator,
answerdotai/ModernBERT-base, answerdotai/ModernBERT-large).
"""

from __future__ import annotations

from typing import Any

_BERT_BASE = {
  "model_type": "bert",
  "vocab_size": 30522,
  "hidden_size": 768,
  "num_hidden_layers": 12,
  "num_attention_heads": 12,
  "intermediate_size": 3072,
  "max_position_embeddings": 512,
  "type_vocab_size": 2,
}
_ROBERTA_BASE = {
  **_BERT_BASE,
  "model_type": "roberta",
  "vocab_size": 50265,
  "max_position_embeddings": 514,
  "type_vocab_size": 1,
  "layer_norm_eps": 1e-5,
  "pad_token_id": 1,
}
_LARGE = {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16}
_MODERNBERT_BASE = {
  "model_type": "modernbert",
  "vocab_size": 50368,
  "hidden_size": 768,
  "num_hidden_layers": 22,
  "num_attention_heads": 12,
  "intermediate_size": 1152,
  "max_position_embeddings": 8192,
  "global_attn_every_n_layers": 3,
  "local_attention": 128,
  "global_rope_theta": 160000.0,
  "local_rope_theta": 10000.0,
  "pad_token_id": 50283,
  "bos_token_id": 50281,
  "eos_token_id": 50282,
  "cls_token_id": 50281,
  "sep_token_id": 50282,
}

# config.json fields (those that fix the shapes) of known hub repositories.
KNOWN_CONFIGS: dict[str, dict[str, Any]] = {
  "sentence-transformers/all-MiniLM-L6-v2": {
    **_BERT_BASE,
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "intermediate_size": 1536,
  },
  "google-bert/bert-base-uncased": _BERT_BASE,
  "google-bert/bert-large-uncased": {**_BERT_BASE, **_LARGE, "intermediate_size": 4096},
  "FacebookAI/roberta-base": _ROBERTA_BASE,
  "FacebookAI/roberta-large": {**_ROBERTA_BASE, **_LARGE, "intermediate_size": 4096},
  "google/electra-base-discriminator": {
    **_BERT_BASE,
    "model_type": "electra",
    "embedding_size": 768,
  },
  "google/electra-large-discriminator": {
    **_BERT_BASE,
    **_LARGE,
    "model_type": "electra",
    "embedding_size": 1024,
    "intermediate_size": 4096,
  },
  "answerdotai/ModernBERT-base": _MODERNBERT_BASE,
  "answerdotai/ModernBERT-large": {
    **_MODERNBERT_BASE,
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "intermediate_size": 2624,
  },
}


def known_config(hub_id: str) -> dict[str, Any] | None:
  """The config.json fields of `hub_id` when it is a known repository, else None."""
  config = KNOWN_CONFIGS.get(hub_id)
  return dict(config) if config is not None else None

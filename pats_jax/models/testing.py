"""Tiny random Hugging Face checkpoints for tests, written without torch or downloads.

`write_tiny_checkpoint` writes config.json and model.safetensors in HF layout (every
tensor random, LayerNorm and biases included, so a test catches a mis-mapped tensor)
and, for BERT, a small WordPiece tokenizer, so tests of loaders and trainers can run
on a model with a few thousand parameters.
"""

from __future__ import annotations

import json
import os
import pathlib

import flax.linen as nn
import jax
import numpy as np

from pats_jax.models import checkpoint_io, convert
from pats_jax.models.bert import SequenceClassifier
from pats_jax.models.config import ModelConfig

_WORDS = [
  "the",
  "a",
  "an",
  "is",
  "was",
  "be",
  "to",
  "of",
  "and",
  "in",
  "that",
  "it",
  "for",
  "on",
  "with",
  "as",
  "at",
  "by",
  "this",
  "not",
  "but",
  "from",
  "or",
  "good",
  "bad",
  "great",
  "movie",
  "film",
  "story",
  "actor",
  "plot",
  "fun",
  "dull",
  "love",
  "hate",
  "very",
  "really",
  "quite",
  "man",
  "woman",
  "dog",
  "cat",
  "play",
  "run",
  "walk",
  "say",
  "said",
  "think",
  "sentence",
  "pair",
  "same",
  "different",
  "yes",
  "no",
]


def tiny_config(model_type: str = "bert", **overrides) -> dict:
  """A small HF config.json dict for `model_type` ("bert" or "roberta")."""
  pad = 0 if model_type == "bert" else 1
  hf = {
    "model_type": model_type,
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 37,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 64 + pad + 1,
    "type_vocab_size": 2 if model_type == "bert" else 1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12 if model_type == "bert" else 1e-5,
    "pad_token_id": pad,
    "bos_token_id": 0,
    "eos_token_id": 2,
  }
  hf.update(overrides)
  return hf


def _write_wordpiece_vocab(out: pathlib.Path, vocab_size: int) -> None:
  """vocab.txt + tokenizer_config.json: AutoTokenizer builds a BERT WordPiece from them."""
  special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
  letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
  pieces = special + letters + [f"##{c}" for c in letters] + list(".,!?'") + list(_WORDS)
  vocab = list(dict.fromkeys(pieces))[:vocab_size]
  vocab += [f"[unused{i}]" for i in range(vocab_size - len(vocab))]
  (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
  tokenizer_config = {
    "tokenizer_class": "BertTokenizer",
    "do_lower_case": True,
    "model_max_length": 64,
  }
  (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def write_tiny_checkpoint(
  out_dir: str | os.PathLike,
  *,
  model_type: str = "bert",
  num_labels: int = 2,
  seed: int = 0,
  with_head: bool = True,
  tokenizer: bool = True,
  **config_overrides,
) -> pathlib.Path:
  """Writes a tiny random HF checkpoint (config.json, model.safetensors, tokenizer).

  Args:
    out_dir: folder to write (created).
    model_type: "bert" or "roberta".
    num_labels: outputs of the classification head.
    seed: seed of the random weights.
    with_head: include the classification head tensors (without, a loader must
      initialise it).
    tokenizer: write a WordPiece tokenizer (BERT only; needs vocab_size >= 100).
    **config_overrides: config.json keys to change (e.g. hidden_act="relu").

  Returns:
    The folder.
  """
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf = tiny_config(model_type, **config_overrides)
  config = ModelConfig.from_hf_dict(hf, num_labels=num_labels)
  module = SequenceClassifier(config)
  shapes = nn.meta.unbox(
    jax.eval_shape(lambda: module.init(jax.random.key(0), np.zeros((1, 1), np.int32)))
  )["params"]
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(np.float32), shapes)
  tensors = convert.to_hf(params, config)
  if not with_head:
    tensors = {k: v for k, v in tensors.items() if not k.startswith("classifier")}
  checkpoint_io.write_safetensors(tensors, out / "model.safetensors")
  hf_out = config.to_hf_dict()
  (out / "config.json").write_text(json.dumps(hf_out, indent=2, sort_keys=True) + "\n")
  if tokenizer and model_type == "bert":
    _write_wordpiece_vocab(out, config.vocab_size)
  return out

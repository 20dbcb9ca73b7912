"""Tiny random Hugging Face checkpoints, written without torch or downloads.

`write_tiny_checkpoint` writes config.json, model.safetensors and tokenizer files in the Hugging
Face folder layout for a BERT or RoBERTa of a few thousand parameters (`tiny_config`). Tests,
benchmarks and quick runs (`--config.model=tiny-bert` / `tiny-roberta`, as in `configs/tiny.py`)
load it like any downloaded checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib

import flax.linen as nn
import jax
import numpy as np

from pats_jax.models import checkpoint_io, convert
from pats_jax.models._transformers import import_transformers
from pats_jax.models.bert import SequenceClassifier
from pats_jax.models.config import ModelConfig

# Whole-word tokens of the tiny WordPiece vocabulary: the words of the synthetic GLUE folder
# (`pats_jax.data.synthetic`), then common English ones; other words split into letters.
_WORDS = (
  "good", "great", "fine", "nice", "happy", "bright", "bad", "awful", "poor", "sad", "dark",
  "grim", "the", "a", "cat", "dog", "man", "woman", "house", "car", "tree", "river", "city",
  "sees", "likes", "walks", "near", "and", "with", "is", "was", "very", "old", "new", "red",
  "blue", "small", "big", "runs", "sits", "on", "in", "not", "movie", "film", "story", "actor",
  "plot", "fun", "dull", "love", "hate", "really", "quite", "play", "run", "walk", "say", "said",
  "think", "sentence", "pair", "same", "different", "yes", "no",
)  # fmt: skip
_BPE_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_MAX_LENGTH = 64


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
    "model_max_length": _MAX_LENGTH,
  }
  (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")


def _write_byte_level_bpe(out: pathlib.Path) -> int:
  """A RoBERTa byte-level BPE trained on `_WORDS` (tokenizer files); returns its size.

  Byte-level BPE starts from the 256 byte symbols, so the vocabulary has at least 261 entries.
  """
  import tokenizers

  transformers = import_transformers()

  bpe = tokenizers.ByteLevelBPETokenizer()
  bpe.train_from_iterator(
    [" ".join(_WORDS)] * 4,
    vocab_size=400,
    min_frequency=1,
    special_tokens=list(_BPE_SPECIAL),
    show_progress=False,
  )
  merges_file = pathlib.Path(bpe.save_model(str(out))[1])
  merges = [
    tuple(line.split(" "))
    for line in merges_file.read_text().splitlines()
    if line and not line.startswith("#")
  ]
  tokenizer = transformers.RobertaTokenizerFast(vocab=bpe.get_vocab(), merges=merges)
  tokenizer.model_max_length = _MAX_LENGTH
  tokenizer.save_pretrained(str(out))
  return len(tokenizer)


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
  """Writes a tiny random HF checkpoint (config.json, model.safetensors, tokenizer files).

  Every tensor is drawn from N(0, 0.2^2), LayerNorm scales and biases included, so a loader
  that maps a tensor to the wrong place changes the outputs.

  Args:
    out_dir: folder to write (created).
    model_type: "bert" or "roberta".
    num_labels: outputs of the classification head.
    seed: seed of the random weights.
    with_head: include the classification head tensors (without, a loader must
      initialise it, as for a bare encoder such as all-MiniLM-L6-v2).
    tokenizer: write a tokenizer: a WordPiece of `vocab_size` entries for BERT (needs
      vocab_size >= 100), a byte-level BPE for RoBERTa (vocab_size is raised to its size).
    **config_overrides: config.json keys to change (e.g. hidden_act="relu").

  Returns:
    The folder.

  Raises:
    ValueError: `model_type` is neither "bert" nor "roberta".
  """
  if model_type not in ("bert", "roberta"):
    raise ValueError(f"model_type={model_type!r}; expected 'bert' or 'roberta'")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf = tiny_config(model_type, **config_overrides)
  if tokenizer and model_type == "roberta":
    hf["vocab_size"] = max(hf["vocab_size"], _write_byte_level_bpe(out))
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

"""Tiny random Hugging Face checkpoints, written without torch or downloads.

`write_tiny_checkpoint` writes config.json, model.safetensors and tokenizer files in the Hugging
Face folder layout for a model of any registered family (`registry.model_types()`) with a few
thousand parameters (`tiny_config`, the family's `Family.tiny_config`). Tests, benchmarks and
quick runs (`--config.model=tiny-bert`, `tiny-roberta`, `tiny-electra`, `tiny-modernbert`, as in
`configs/tiny.py`) load it like any downloaded checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib

import flax.linen as nn
import jax
import numpy as np

from pats_jax.models import checkpoint_io, convert, registry
from pats_jax.models._transformers import import_transformers
from pats_jax.models.classifier import SequenceClassifier
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
  """A small HF config.json dict for `model_type` (a registered family), with `overrides`."""
  return _family(model_type).tiny_config(**overrides)


def _family(model_type: str) -> registry.Family:
  family = registry.find(model_type)
  if family is None:
    raise ValueError(f"model_type={model_type!r}; expected one of {registry.model_types()}")
  return family


def _write_wordpiece_vocab(out: pathlib.Path, vocab_size: int) -> int:
  """vocab.txt + tokenizer_config.json (AutoTokenizer builds a BERT WordPiece from them) with
  `vocab_size` entries; returns `vocab_size`."""
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
  return vocab_size


def _write_byte_level_bpe(out: pathlib.Path, vocab_size: int) -> int:
  """A RoBERTa byte-level BPE trained on `_WORDS` (tokenizer files); returns the model's
  vocabulary size, `vocab_size` raised to the tokenizer's size.

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
  return max(vocab_size, len(tokenizer))


# `Family.tiny_tokenizer` -> writer(folder, vocab_size) -> the vocabulary size the model needs.
_TOKENIZER_WRITERS = {"wordpiece": _write_wordpiece_vocab, "byte_level_bpe": _write_byte_level_bpe}


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
    model_type: a registered family ("bert", "roberta", "electra", ...).
    num_labels: outputs of the classification head.
    seed: seed of the random weights.
    with_head: include the classification head tensors outside the encoder (without, a
      loader must initialise them, as for a bare encoder such as all-MiniLM-L6-v2).
    tokenizer: write the family's tokenizer (`Family.tiny_tokenizer`): a WordPiece of
      `vocab_size` entries (needs vocab_size >= 100), or a byte-level BPE (RoBERTa;
      vocab_size is raised to its size).
    **config_overrides: config.json keys to change (e.g. hidden_act="relu").

  Returns:
    The folder.

  Raises:
    ValueError: `model_type` is not a registered family.
  """
  family = _family(model_type)
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  hf = family.tiny_config(**config_overrides)
  if tokenizer:
    hf["vocab_size"] = _TOKENIZER_WRITERS[family.tiny_tokenizer](out, hf["vocab_size"])
  config = ModelConfig.from_hf_dict(hf, num_labels=num_labels)
  module = SequenceClassifier(config)
  shapes = nn.meta.unbox(
    jax.eval_shape(lambda: module.init(jax.random.key(0), np.zeros((1, 1), np.int32)))
  )["params"]
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: rng.normal(0.0, 0.2, s.shape).astype(np.float32), shapes)
  tensors = convert.to_hf(params, config)
  if not with_head:
    task_head = {s.hf_name for s in convert.tensor_specs(config) if s.in_head and not s.prefixed}
    tensors = {k: v for k, v in tensors.items() if k not in task_head}
  checkpoint_io.write_safetensors(tensors, out / "model.safetensors")
  hf_out = config.to_hf_dict()
  (out / "config.json").write_text(json.dumps(hf_out, indent=2, sort_keys=True) + "\n")
  return out

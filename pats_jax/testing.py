"""Test helpers: a tiny Hugging Face checkpoint and a tiny GLUE folder, both written to disk.

`make_tiny_checkpoint` writes what `pats_jax.models.load` and `transformers.AutoTokenizer`
read from a real checkpoint folder (config.json, model.safetensors with Hugging Face tensor
names, tokenizer files), with random weights and a vocabulary built from `WORDS`, so tests of
the trainer need neither torch nor a download. `make_tiny_glue` writes a `glue_data`-layout
folder whose labels follow simple rules on those words, so a tiny model can learn them.
"""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np

# The tiny vocabulary: sentiment words decide the single-sentence labels.
POSITIVE = ("good", "great", "fine", "nice", "happy", "bright")
NEGATIVE = ("bad", "awful", "poor", "sad", "dark", "grim")
NEUTRAL = (
  "the",
  "a",
  "cat",
  "dog",
  "man",
  "woman",
  "house",
  "car",
  "tree",
  "river",
  "city",
  "sees",
  "likes",
  "walks",
  "near",
  "and",
  "with",
  "is",
  "was",
  "very",
  "old",
  "new",
  "red",
  "blue",
  "small",
  "big",
  "runs",
  "sits",
  "on",
  "in",
)
WORDS = POSITIVE + NEGATIVE + NEUTRAL
BERT_SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _hf_tensors(
  *,
  vocab_size: int,
  hidden: int,
  layers: int,
  intermediate: int,
  max_positions: int,
  type_vocab: int,
  rng: np.random.Generator,
) -> dict[str, np.ndarray]:
  """Random tensors with the names and shapes of a bare `BertModel` / `RobertaModel`."""

  def normal(*shape: int) -> np.ndarray:
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)

  def linear(name: str, n_out: int, n_in: int) -> dict[str, np.ndarray]:
    return {f"{name}.weight": normal(n_out, n_in), f"{name}.bias": normal(n_out)}

  def layer_norm(name: str) -> dict[str, np.ndarray]:
    return {
      f"{name}.weight": np.ones(hidden, np.float32),
      f"{name}.bias": np.zeros(hidden, np.float32),
    }

  tensors = {
    "embeddings.word_embeddings.weight": normal(vocab_size, hidden),
    "embeddings.position_embeddings.weight": normal(max_positions, hidden),
    "embeddings.token_type_embeddings.weight": normal(type_vocab, hidden),
    **layer_norm("embeddings.LayerNorm"),
    **linear("pooler.dense", hidden, hidden),
  }
  for i in range(layers):
    prefix = f"encoder.layer.{i}"
    for name in ("query", "key", "value"):
      tensors.update(linear(f"{prefix}.attention.self.{name}", hidden, hidden))
    tensors.update(linear(f"{prefix}.attention.output.dense", hidden, hidden))
    tensors.update(layer_norm(f"{prefix}.attention.output.LayerNorm"))
    tensors.update(linear(f"{prefix}.intermediate.dense", intermediate, hidden))
    tensors.update(linear(f"{prefix}.output.dense", hidden, intermediate))
    tensors.update(layer_norm(f"{prefix}.output.LayerNorm"))
  return tensors


def _write_tokenizer(out: pathlib.Path, model_type: str) -> int:
  """Writes tokenizer files `AutoTokenizer` loads; returns the vocabulary size."""
  import transformers

  if model_type == "bert":
    vocab = {token: i for i, token in enumerate((*BERT_SPECIAL, *WORDS))}
    tokenizer = transformers.BertTokenizerFast(vocab=vocab, do_lower_case=True)
  else:
    import tokenizers

    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
      [" ".join(WORDS)] * 4,
      vocab_size=400,
      min_frequency=1,
      special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
      show_progress=False,
    )
    merges_file = pathlib.Path(bpe.save_model(str(out))[1])
    merges = [
      tuple(line.split(" "))
      for line in merges_file.read_text().splitlines()
      if line and not line.startswith("#")
    ]
    tokenizer = transformers.RobertaTokenizerFast(vocab=bpe.get_vocab(), merges=merges)
  tokenizer.model_max_length = 512
  tokenizer.save_pretrained(str(out))
  return len(tokenizer)


def make_tiny_checkpoint(
  out_dir: str | os.PathLike[str],
  model_type: str = "bert",
  *,
  hidden_size: int = 32,
  num_layers: int = 2,
  num_heads: int = 4,
  intermediate_size: int = 64,
  max_position_embeddings: int = 64,
  seed: int = 0,
) -> pathlib.Path:
  """Writes a random tiny BERT or RoBERTa in the Hugging Face folder format.

  Args:
    out_dir: the folder to write (created).
    model_type: `"bert"` (WordPiece tokenizer) or `"roberta"` (byte-level BPE tokenizer).
    hidden_size: the model width; a multiple of `num_heads`.
    num_layers: transformer layers.
    num_heads: attention heads.
    intermediate_size: the MLP width.
    max_position_embeddings: the longest input (RoBERTa stores 2 more positions).
    seed: the weights' random seed.

  Returns:
    The folder, with config.json, model.safetensors (bare encoder names, no classifier: the
    head is newly initialised on load, as for all-MiniLM-L6-v2) and tokenizer files.

  Raises:
    ValueError: an unknown `model_type` or `hidden_size` not a multiple of `num_heads`.
  """
  from safetensors.numpy import save_file

  if model_type not in ("bert", "roberta"):
    raise ValueError(f"model_type={model_type!r}; expected 'bert' or 'roberta'")
  if hidden_size % num_heads:
    raise ValueError(f"hidden_size={hidden_size} is not a multiple of num_heads={num_heads}")
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  vocab_size = _write_tokenizer(out, model_type)
  roberta = model_type == "roberta"
  positions = max_position_embeddings + (2 if roberta else 0)
  type_vocab = 1 if roberta else 2
  config = {
    "architectures": ["RobertaModel" if roberta else "BertModel"],
    "model_type": model_type,
    "vocab_size": vocab_size,
    "hidden_size": hidden_size,
    "num_hidden_layers": num_layers,
    "num_attention_heads": num_heads,
    "intermediate_size": intermediate_size,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": positions,
    "type_vocab_size": type_vocab,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5 if roberta else 1e-12,
    "pad_token_id": 1 if roberta else 0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "position_embedding_type": "absolute",
  }
  (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  tensors = _hf_tensors(
    vocab_size=vocab_size,
    hidden=hidden_size,
    layers=num_layers,
    intermediate=intermediate_size,
    max_positions=positions,
    type_vocab=type_vocab,
    rng=np.random.default_rng(seed),
  )
  save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
  return out


def _sentence(rng: np.random.Generator, *, mood: int | None = None, length: int = 6) -> list[str]:
  """Random neutral words plus one positive (mood 1) or negative (mood 0) word."""
  words = list(rng.choice(NEUTRAL, size=length - 1))
  if mood is not None:
    words.insert(int(rng.integers(0, length)), str(rng.choice(POSITIVE if mood else NEGATIVE)))
  return [str(word) for word in words]


def _pair(rng: np.random.Generator) -> tuple[str, str, float]:
  """Two sentences and their word overlap in [0, 1] (half the pairs share most words)."""
  first = _sentence(rng, length=int(rng.integers(5, 10)))
  if rng.random() < 0.5:
    second = [word for word in first if rng.random() < 0.8] or first[:1]
  else:
    second = _sentence(rng, length=int(rng.integers(3, 7)))
  overlap = len(set(second) & set(first)) / len(set(second))
  return " ".join(first), " ".join(second), overlap


def _write_tsv(path: pathlib.Path, header: list[str] | None, rows: list[list[str]]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def make_tiny_glue(
  out_dir: str | os.PathLike[str],
  *,
  num_train: int = 64,
  num_dev: int = 32,
  num_test: int = 16,
  seed: int = 0,
) -> pathlib.Path:
  """Writes a tiny GLUE folder (CoLA, SST-2, MRPC, STS-B, RTE, WNLI) in the glue_data layout.

  Labels follow rules a tiny model can learn: single sentences are positive (SST-2) or
  acceptable (CoLA) when they hold a positive word; pairs are paraphrases / entailed when the
  second sentence mostly repeats the first (overlap >= 0.75); STS-B's score is 5 x overlap.

  Args:
    out_dir: the folder to write (created).
    num_train: rows of each train.tsv.
    num_dev: rows of each dev.tsv.
    num_test: rows of each test.tsv (unlabelled).
    seed: the random seed.

  Returns:
    The folder.
  """
  out = pathlib.Path(out_dir)
  rng = np.random.default_rng(seed)
  for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
    test = split == "test"
    moods = [int(rng.integers(0, 2)) for _ in range(count)]
    singles = [" ".join(_sentence(rng, mood=mood)) for mood in moods]
    pairs = [_pair(rng) for _ in range(count)]
    same = [int(overlap >= 0.75) for _, _, overlap in pairs]
    if test:
      _write_tsv(
        out / "CoLA" / "test.tsv",
        ["index", "sentence"],
        [[str(i), text] for i, text in enumerate(singles)],
      )
      _write_tsv(
        out / "SST-2" / "test.tsv",
        ["index", "sentence"],
        [[str(i), text] for i, text in enumerate(singles)],
      )
    else:
      _write_tsv(
        out / "CoLA" / f"{split}.tsv",
        None,
        [
          ["tiny", str(mood), "" if mood else "*", text]
          for mood, text in zip(moods, singles, strict=True)
        ],
      )
      _write_tsv(
        out / "SST-2" / f"{split}.tsv",
        ["sentence", "label"],
        [[text, str(mood)] for mood, text in zip(moods, singles, strict=True)],
      )
    mrpc_header = ["index" if test else "Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    _write_tsv(
      out / "MRPC" / f"{split}.tsv",
      mrpc_header,
      [
        [str(i) if test else str(label), str(2 * i), str(2 * i + 1), a, b]
        for i, ((a, b, _), label) in enumerate(zip(pairs, same, strict=True))
      ],
    )
    stsb_header = [
      "index",
      "genre",
      "filename",
      "year",
      "old_index",
      "source1",
      "source2",
      "sentence1",
      "sentence2",
    ] + ([] if test else ["score"])
    _write_tsv(
      out / "STS-B" / f"{split}.tsv",
      stsb_header,
      [
        [str(i), "tiny", "tiny", "2026", f"{i:04d}", "none", "none", a, b]
        + ([] if test else [f"{5 * overlap:.3f}"])
        for i, (a, b, overlap) in enumerate(pairs)
      ],
    )
    rte_labels = ("entailment", "not_entailment")
    for task, names in (("RTE", rte_labels), ("WNLI", ("0", "1"))):
      header = ["index", "sentence1", "sentence2"] + ([] if test else ["label"])
      rows = []
      for i, ((a, b, _), label) in enumerate(zip(pairs, same, strict=True)):
        # RTE: entailment (id 0) when the pair overlaps; WNLI: entailment is id 1.
        name = names[1 - label] if task == "RTE" else names[label]
        rows.append([str(i), a, b] + ([] if test else [name]))
      _write_tsv(out / task / f"{split}.tsv", header, rows)
  return out


def load_config(path: str | os.PathLike[str], arg: str | None = None):
  """Loads a config file's `get_config(arg)` the way `train.py --config path[:arg]` does, locked.

  Args:
    path: a config file (`configs/*.py`); it may import `configs.*` from the repository root.
    arg: the text after `:` in `--config path:arg`, or None.

  Returns:
    The locked `ml_collections.ConfigDict`.
  """
  import importlib.util
  import sys

  path = pathlib.Path(path).resolve()
  root = next(
    (str(parent.parent) for parent in path.parents if parent.name == "configs"), str(path.parent)
  )
  if root not in sys.path:
    sys.path.insert(0, root)
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg is not None else module.get_config()
  config.lock()
  return config

"""Tokenisation of a split into compact numpy arrays, with an on-disk cache.

A split is stored as one flat `int32` array of all token ids (and an `int8` array of token
types) plus row offsets, so memory is proportional to the real number of tokens and a batch
is assembled by one numpy gather (`TokenizedSplit.gather`). Tokenisation calls the fast
(Rust) tokenizer on whole lists of texts, in chunks, never per example in Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import pathlib
import re
import tempfile
from collections.abc import Sequence

import datasets
import numpy as np
import tokenizers

from pats_jax.data import examples
from pats_jax.data import tasks as tasks_lib
from pats_jax.data.tasks import TaskSpec

_CACHE_VERSION = 1
_CHUNK = 8192


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedSplit:
  """The tokenised examples of one split.

  Row `i` has tokens `input_ids[offsets[i]:offsets[i + 1]]` (special tokens included, at most
  `max_length`).

  Attributes:
    input_ids: int32 `[total_tokens]`, all rows concatenated.
    token_type_ids: int8 `[total_tokens]`, segment ids (0 for the first text, 1 for the second).
    offsets: int64 `[num_rows + 1]`, row start positions; `offsets[-1] == total_tokens`.
    lengths: int32 `[num_rows]`, tokens per row.
    labels: int32 `[num_rows]` class ids (-1 when unlabelled), or float32 for regression.
    idx: int32 `[num_rows]`, the examples' `idx`.
    pad_token_id: the tokenizer's padding id.
    max_length: the truncation length used.
    name: `"<task>/<split>"`, for messages.
  """

  input_ids: np.ndarray
  token_type_ids: np.ndarray
  offsets: np.ndarray
  lengths: np.ndarray
  labels: np.ndarray
  idx: np.ndarray
  pad_token_id: int
  max_length: int
  name: str = ""

  def __len__(self) -> int:
    return int(self.lengths.shape[0])

  @property
  def is_regression(self) -> bool:
    """True when labels are real numbers."""
    return self.labels.dtype.kind == "f"

  def gather(self, rows: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Pads the given rows to `length` tokens.

    Args:
      rows: int `[b]`, row numbers.
      length: the padded length, at least the longest of the rows.

    Returns:
      `input_ids`, `attention_mask`, `token_type_ids`: int32 `[b, length]`; padding positions
      hold `pad_token_id`, 0 and 0.
    """
    rows = np.asarray(rows, dtype=np.int64)
    lengths = self.lengths[rows]
    if lengths.size and int(lengths.max()) > length:
      raise ValueError(f"{self.name}: length {length} is shorter than a row ({lengths.max()})")
    positions = np.arange(length, dtype=np.int64)
    mask = positions[None, :] < lengths[:, None]
    flat = np.where(mask, self.offsets[rows][:, None] + positions[None, :], 0)
    input_ids = np.where(mask, self.input_ids[flat], self.pad_token_id).astype(np.int32)
    token_type_ids = np.where(mask, self.token_type_ids[flat], 0).astype(np.int32)
    return {
      "input_ids": input_ids,
      "attention_mask": mask.astype(np.int32),
      "token_type_ids": token_type_ids,
    }

  def row(self, i: int) -> np.ndarray:
    """The token ids of row `i` (no padding)."""
    return self.input_ids[self.offsets[i] : self.offsets[i + 1]]


def _backend_copy(tokenizer: object) -> tokenizers.Tokenizer:
  """A private copy of the Rust tokenizer, without truncation or padding."""
  backend = getattr(tokenizer, "backend_tokenizer", None)
  if backend is None:
    raise TypeError(
      f"tokenize needs a fast (Rust) tokenizer, got {type(tokenizer).__name__}; load it with "
      "transformers.AutoTokenizer.from_pretrained(..., use_fast=True)"
    )
  copy = tokenizers.Tokenizer.from_str(backend.to_str())
  copy.no_truncation()
  copy.no_padding()
  return copy


def tokenizer_fingerprint(tokenizer: object) -> str:
  """A hash of everything that decides the token ids: vocabulary, normaliser, templates.

  Truncation and padding are left out: `transformers` changes them on the shared Rust
  tokenizer at each call, and `tokenize` sets its own.
  """
  return hashlib.sha256(_backend_copy(tokenizer).to_str().encode("utf-8")).hexdigest()


def data_fingerprint(texts: Sequence[Sequence[str]], labels: np.ndarray, idx: np.ndarray) -> str:
  """A hash of a split's texts, labels and idx (so an edited file is re-tokenised)."""
  hasher = hashlib.sha256()
  for column in texts:
    hasher.update("\x00".join(column).encode("utf-8", "surrogatepass"))
    hasher.update(b"\x01")
  hasher.update(np.ascontiguousarray(labels).tobytes())
  hasher.update(np.ascontiguousarray(idx).tobytes())
  return hasher.hexdigest()


def _backend(tokenizer: object, max_length: int) -> tokenizers.Tokenizer:
  """A private copy of the Rust tokenizer with truncation on and padding off.

  The copy leaves the caller's tokenizer untouched; its settings equal those that
  `tokenizer(texts, pairs, truncation=True, max_length=max_length)` would apply.
  """
  copy = _backend_copy(tokenizer)
  copy.enable_truncation(max_length, strategy="longest_first")
  return copy


def _tokenize_texts(
  backend: tokenizers.Tokenizer, first: Sequence[str], second: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Returns flat ids, flat token types and lengths, tokenising in chunks of `_CHUNK` rows."""
  encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
  ids_parts, types_parts, length_parts = [], [], []
  for start in range(0, len(first), _CHUNK):
    stop = start + _CHUNK
    batch = (
      list(first[start:stop])
      if second is None
      else list(zip(first[start:stop], second[start:stop], strict=True))
    )
    encodings = encode(batch, add_special_tokens=True)
    lengths = np.fromiter((len(e) for e in encodings), dtype=np.int32, count=len(encodings))
    total = int(lengths.sum())
    ids_parts.append(
      np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int32, count=total)
    )
    types_parts.append(
      np.fromiter(
        itertools.chain.from_iterable(e.type_ids for e in encodings), np.int8, count=total
      )
    )
    length_parts.append(lengths)
  return np.concatenate(ids_parts), np.concatenate(types_parts), np.concatenate(length_parts)


def _cache_file(
  cache_dir: pathlib.Path,
  spec: TaskSpec,
  split: str,
  tokenizer: object,
  max_length: int,
  data_hash: str,
) -> pathlib.Path:
  name = os.path.basename(str(getattr(tokenizer, "name_or_path", "") or "tokenizer").rstrip("/"))
  key = json.dumps(
    {
      "version": _CACHE_VERSION,
      "task": spec.name,
      "text_keys": spec.text_keys,
      "split": split,
      "tokenizer": name,
      "vocab": tokenizer_fingerprint(tokenizer),
      "max_length": max_length,
      "data": data_hash,
    },
    sort_keys=True,
  )
  digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
  safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec.name}-{split}-{name}-L{max_length}")
  return cache_dir / f"{safe}-{digest}.npz"


def _save(path: pathlib.Path, split: TokenizedSplit) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(
        f,
        input_ids=split.input_ids,
        token_type_ids=split.token_type_ids,
        offsets=split.offsets,
        lengths=split.lengths,
        labels=split.labels,
        idx=split.idx,
        meta=np.array([split.pad_token_id, split.max_length], dtype=np.int64),
      )
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _load(path: pathlib.Path, name: str) -> TokenizedSplit:
  with np.load(path) as data:
    pad_token_id, max_length = (int(v) for v in data["meta"])
    return TokenizedSplit(
      input_ids=data["input_ids"],
      token_type_ids=data["token_type_ids"],
      offsets=data["offsets"],
      lengths=data["lengths"],
      labels=data["labels"],
      idx=data["idx"],
      pad_token_id=pad_token_id,
      max_length=max_length,
      name=name,
    )


def tokenize(
  dataset: datasets.Dataset,
  tokenizer: object,
  spec: str | TaskSpec,
  *,
  max_length: int,
  cache_dir: str | os.PathLike[str] | None = None,
  split: str | None = None,
) -> TokenizedSplit:
  """Tokenises a split (single sentences or pairs) with truncation to `max_length`.

  Pairs are truncated longest-first, so both texts keep as many tokens as possible.

  Args:
    dataset: examples with the task's text fields, `label` and `idx` (from `load_glue` or
      `load_custom`).
    tokenizer: a `transformers` fast tokenizer (the model's own).
    spec: the task (`TaskSpec` or GLUE name), which names the text fields.
    max_length: the most tokens per example, special tokens included.
    cache_dir: when given, the arrays are stored there as `.npz`, keyed by task, split,
      tokenizer (name and a hash of its vocabulary and settings), `max_length` and a hash of
      the data, and read back on the next call with the same inputs.
    split: the split name for the cache key and messages (default: `dataset.split`).

  Returns:
    A `TokenizedSplit`.
  """
  spec = tasks_lib.get_task(spec)
  if max_length < 2:
    raise ValueError(f"max_length must be at least 2 (room for special tokens), got {max_length}")
  split = split or str(dataset.split or "unknown")
  name = f"{spec.name}/{split}"
  keys = [key for key in spec.text_keys if key is not None]
  missing = [key for key in [*keys, "label", "idx"] if key not in dataset.column_names]
  if missing:
    raise ValueError(
      f"{name}: dataset lacks columns {missing} (has {dataset.column_names}); the task "
      f"{spec.name!r} reads text fields {keys}"
    )
  pad_token_id = getattr(tokenizer, "pad_token_id", None)
  if pad_token_id is None:
    raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no pad token")
  texts = [examples.column(dataset, key) for key in keys]
  labels = examples.numpy_column(dataset, "label").astype(
    np.float32 if spec.is_regression else np.int32
  )
  idx = examples.numpy_column(dataset, "idx").astype(np.int32)
  cache_path = None
  if cache_dir is not None:
    cache_path = _cache_file(
      pathlib.Path(cache_dir),
      spec,
      split,
      tokenizer,
      max_length,
      data_fingerprint(texts, labels, idx),
    )
    if cache_path.is_file():
      return _load(cache_path, name)
  ids, types, lengths = _tokenize_texts(
    _backend(tokenizer, max_length), texts[0], texts[1] if len(texts) > 1 else None
  )
  offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
  np.cumsum(lengths, out=offsets[1:])
  result = TokenizedSplit(
    input_ids=ids,
    token_type_ids=types,
    offsets=offsets,
    lengths=lengths,
    labels=labels,
    idx=idx,
    pad_token_id=int(pad_token_id),
    max_length=max_length,
    name=name,
  )
  if cache_path is not None:
    _save(cache_path, result)
  return result

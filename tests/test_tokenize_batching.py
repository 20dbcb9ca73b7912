"""Tokenisation (real MiniLM tokenizer), the cache, and training/evaluation batches."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import transformers

from pats_jax import data
from pats_jax.data import examples

# The module, not the function `pats_jax.data.tokenize` that shadows it.
tokenize_lib = importlib.import_module("pats_jax.data.tokenize")

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def tokenizer(minilm_dir):
  return transformers.AutoTokenizer.from_pretrained(minilm_dir)


def _pairs_dataset(n: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  words = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "quietly",
    "antidisestablishmentarianism",
    "JAX",
    "fine-tuning",
    "isn't",
    "naïve",
    "42",
    "!",
  ]
  first = [" ".join(rng.choice(words, rng.integers(1, 40))) for _ in range(n)]
  second = [" ".join(rng.choice(words, rng.integers(1, 30))) for _ in range(n)]
  labels = rng.integers(0, 2, n)
  return examples.build_dataset(
    data.get_task("rte"), [first, second], labels, split="train", origin="synthetic"
  )


@pytest.fixture(scope="module")
def pairs(tokenizer):
  """200 synthetic pairs, labels replaced by row numbers so that each row is identifiable."""
  split = data.tokenize(_pairs_dataset(200), tokenizer, "rte", max_length=MAX_LENGTH)
  return dataclasses.replace(split, labels=np.arange(len(split), dtype=np.int32))


def test_tokenize_equals_the_tokenizer_call(tokenizer):
  dataset = _pairs_dataset(50)
  split = data.tokenize(dataset, tokenizer, "rte", max_length=MAX_LENGTH)
  reference = tokenizer(
    dataset["sentence1"][:], dataset["sentence2"][:], truncation=True, max_length=MAX_LENGTH
  )
  assert len(split) == 50
  assert split.input_ids.dtype == np.int32 and split.offsets[-1] == split.input_ids.size
  for i in range(50):
    assert split.row(i).tolist() == reference["input_ids"][i]
    types = split.token_type_ids[split.offsets[i] : split.offsets[i + 1]]
    assert types.tolist() == reference["token_type_ids"][i]
  assert split.lengths.max() == MAX_LENGTH  # Some pairs were truncated.
  assert split.labels.tolist() == dataset["label"][:]
  assert split.idx.tolist() == list(range(50))
  batch = split.gather(np.array([3, 0]), 64)
  padded = tokenizer(
    dataset["sentence1"][[3, 0]],
    dataset["sentence2"][[3, 0]],
    truncation=True,
    max_length=MAX_LENGTH,
    padding="max_length",
  )
  np.testing.assert_array_equal(batch["input_ids"], padded["input_ids"])
  np.testing.assert_array_equal(batch["attention_mask"], padded["attention_mask"])
  np.testing.assert_array_equal(batch["token_type_ids"], padded["token_type_ids"])


@pytest.mark.slow
def test_tokenize_single_sentences_real_sst2(glue_dir, tokenizer):
  dataset = data.load_glue("sst2", "validation", source="local", data_dir=glue_dir)
  split = data.tokenize(dataset, tokenizer, "sst2", max_length=128)
  reference = tokenizer(dataset["sentence"][:], truncation=True, max_length=128)
  assert [split.row(i).tolist() for i in range(len(split))] == reference["input_ids"]
  assert not split.token_type_ids.any()
  assert split.name == "sst2/validation"


def test_cache_is_reused_and_keyed(tokenizer, tmp_path, monkeypatch):
  dataset = _pairs_dataset(30)
  first = data.tokenize(dataset, tokenizer, "rte", max_length=32, cache_dir=tmp_path)
  files = sorted(tmp_path.glob("*.npz"))
  assert len(files) == 1 and files[0].name.startswith("rte-train-model-L32-")

  def fail(*args, **kwargs):
    raise AssertionError("tokenised again despite the cache")

  monkeypatch.setattr(tokenize_lib, "_tokenize_texts", fail)
  tokenizer(["some text"], truncation=True, max_length=7, padding="max_length")  # Mutates it.
  again = data.tokenize(dataset, tokenizer, "rte", max_length=32, cache_dir=tmp_path)
  for field in ("input_ids", "token_type_ids", "offsets", "lengths", "labels", "idx"):
    np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
  assert again.pad_token_id == first.pad_token_id and again.max_length == 32
  monkeypatch.undo()
  data.tokenize(dataset, tokenizer, "rte", max_length=48, cache_dir=tmp_path)
  data.tokenize(_pairs_dataset(30, seed=1), tokenizer, "rte", max_length=32, cache_dir=tmp_path)
  assert len(list(tmp_path.glob("*.npz"))) == 3  # New files for a new length and new data.


def test_tokenize_rejects_a_slow_tokenizer_and_missing_fields(tokenizer):
  class SlowTokenizer:
    pad_token_id = 0

  with pytest.raises(TypeError, match="fast"):
    data.tokenize(_pairs_dataset(3), SlowTokenizer(), "rte", max_length=16)
  with pytest.raises(ValueError, match="lacks columns"):
    data.tokenize(_pairs_dataset(3), tokenizer, "sst2", max_length=16)


def _epoch(split, **kwargs):
  defaults = {"batch_size": 16, "seed": 0, "epoch": 0, "max_length": MAX_LENGTH}
  return list(data.train_batches(split, **{**defaults, **kwargs}))


def test_train_batches_deterministic_per_seed_and_epoch(pairs):
  a, b = _epoch(pairs), _epoch(pairs)
  assert len(a) == data.num_train_batches(pairs, 16) == 200 // 16
  for x, y in zip(a, b, strict=True):
    assert x.keys() == y.keys() == {"input_ids", "attention_mask", "token_type_ids", "labels"}
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  order = lambda batches: np.concatenate([batch["labels"] for batch in batches])
  assert not np.array_equal(order(a), order(_epoch(pairs, epoch=1)))
  assert not np.array_equal(order(a), order(_epoch(pairs, seed=1)))


def test_every_example_at_most_once_per_epoch_and_rows_are_right(pairs):
  for epoch in range(3):
    batches = _epoch(pairs, epoch=epoch)
    rows = np.concatenate([batch["labels"] for batch in batches])
    assert len(rows) == len(set(rows.tolist())) == 12 * 16
    for batch in batches:
      np.testing.assert_array_equal(batch["attention_mask"].sum(1), pairs.lengths[batch["labels"]])
      for row, ids in zip(batch["labels"], batch["input_ids"], strict=True):
        assert ids[: pairs.lengths[row]].tolist() == pairs.row(row).tolist()
        assert (ids[pairs.lengths[row] :] == pairs.pad_token_id).all()


def test_shapes_are_bounded_multiples(pairs):
  shapes = set()
  for epoch in range(4):
    for batch in _epoch(pairs, epoch=epoch, bucket_multiple=16):
      length = batch["input_ids"].shape[1]
      assert length % 16 == 0 and length <= MAX_LENGTH
      assert length - 16 < batch["attention_mask"].sum(1).max() <= length
      assert batch["input_ids"].dtype == np.int32 and batch["labels"].dtype == np.int32
      shapes.add(batch["input_ids"].shape)
  assert len(shapes) <= MAX_LENGTH // 16
  assert data.padded_length(70, bucket_multiple=16, max_length=100) == 80
  assert data.padded_length(99, bucket_multiple=16, max_length=100) == 100


def test_bucketing_pads_less_than_random_batches(pairs):
  def padding(batches):
    return sum(b["attention_mask"].size - b["attention_mask"].sum() for b in batches)

  bucketed = padding(_epoch(pairs, bucket_window=64, bucket_multiple=1))
  unbucketed = padding(_epoch(pairs, bucket_window=0, bucket_multiple=1))
  assert bucketed < 0.5 * unbucketed


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_partition_the_global_batch(pairs, process_count):
  whole = _epoch(pairs)
  parts = [
    _epoch(pairs, process_index=i, process_count=process_count) for i in range(process_count)
  ]
  for step, global_batch in enumerate(whole):
    pieces = [part[step] for part in parts]
    assert {piece["input_ids"].shape for piece in pieces} == {
      (16 // process_count, global_batch["input_ids"].shape[1])
    }
    for key in global_batch:
      np.testing.assert_array_equal(
        np.concatenate([piece[key] for piece in pieces]), global_batch[key]
      )


def test_resume_with_start_batch(pairs):
  full = _epoch(pairs, epoch=2)
  resumed = _epoch(pairs, epoch=2, start_batch=5)
  assert len(resumed) == len(full) - 5
  for x, y in zip(full[5:], resumed, strict=True):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert _epoch(pairs, start_batch=len(full)) == []
  with pytest.raises(ValueError, match="start_batch"):
    _epoch(pairs, start_batch=len(full) + 1)


@pytest.mark.parametrize("process_count", [1, 2])
def test_eval_covers_every_example_once(pairs, process_count):
  idx = dataclasses.replace(pairs, idx=np.arange(len(pairs), dtype=np.int32) + 1000)
  seen, weights_total, steps = [], 0.0, set()
  for i in range(process_count):
    batches = list(
      data.eval_batches(
        idx, batch_size=24, max_length=MAX_LENGTH, process_index=i, process_count=process_count
      )
    )
    assert len(batches) == data.num_eval_batches(idx, 24) == 9
    for batch in batches:
      assert batch["input_ids"].shape[0] == 24 // process_count
      assert batch["input_ids"].shape[1] % 16 == 0
      real = batch["weights"] > 0
      seen.extend(batch["idx"][real].tolist())
      assert (batch["idx"][~real] == -1).all()
      np.testing.assert_array_equal(batch["labels"][real] + 1000, batch["idx"][real])
      weights_total += batch["weights"].sum()
    steps.add(len(batches))
  assert sorted(seen) == list(range(1000, 1000 + len(pairs)))
  assert weights_total == len(pairs)


def test_bad_batch_arguments(pairs):
  with pytest.raises(ValueError, match="divisible"):
    _epoch(pairs, batch_size=15, process_count=2)
  with pytest.raises(ValueError, match="fewer than one batch"):
    _epoch(pairs, batch_size=256)
  with pytest.raises(ValueError, match="max_length"):
    _epoch(pairs, max_length=32)

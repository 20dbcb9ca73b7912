"""`prefetch.Prefetcher` (order, exceptions, stopping) and the trainer's prefetched inputs."""

from __future__ import annotations

import threading

import jax
import ml_collections
import numpy as np
import pytest

import pats_jax.data as data_lib
from pats_jax.training import prefetch, trainer


def test_items_come_in_order_then_stop():
  with prefetch.Prefetcher(iter(range(50)), depth=2) as items:
    assert list(items) == list(range(50))
    with pytest.raises(StopIteration):
      next(items)


def test_producer_runs_at_most_depth_ahead():
  produced = []
  ready = threading.Semaphore(0)

  def items():
    for index in range(10):
      produced.append(index)
      ready.release()
      yield index

  with prefetch.Prefetcher(items(), depth=2) as ahead:
    for _ in range(3):  # Two queued and one waiting for room.
      assert ready.acquire(timeout=10)
    assert not ready.acquire(timeout=0.2)
    assert produced == [0, 1, 2]
    assert next(ahead) == 0
    assert ready.acquire(timeout=10)
    assert produced == [0, 1, 2, 3]


def test_an_exception_is_raised_after_the_items_before_it():
  def items():
    yield "a"
    yield "b"
    raise OSError("bad shard")

  with prefetch.Prefetcher(items(), depth=2) as ahead:
    assert next(ahead) == "a"
    assert next(ahead) == "b"
    with pytest.raises(OSError, match="bad shard"):
      next(ahead)
    with pytest.raises(StopIteration):
      next(ahead)


def test_close_stops_a_blocked_producer():
  stopped = threading.Event()

  def endless():
    try:
      index = 0
      while True:
        yield index
        index += 1
    finally:
      stopped.set()

  ahead = prefetch.Prefetcher(endless(), depth=2, name="endless")
  assert next(ahead) == 0
  ahead.close()
  assert not any(thread.name == "endless" for thread in threading.enumerate())
  assert stopped.is_set()
  with pytest.raises(StopIteration):
    next(ahead)


def test_depth_must_be_positive():
  with pytest.raises(ValueError, match="depth"):
    prefetch.Prefetcher(iter(()), depth=0)


def _split(rows: int) -> data_lib.TokenizedSplit:
  rng = np.random.default_rng(0)
  lengths = rng.integers(3, 12, size=rows).astype(np.int32)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  return data_lib.TokenizedSplit(
    input_ids=rng.integers(5, 100, size=offsets[-1]).astype(np.int32),
    token_type_ids=np.zeros(offsets[-1], np.int8),
    offsets=offsets,
    lengths=lengths,
    labels=rng.integers(0, 2, size=rows).astype(np.int32),
    idx=np.arange(rows, dtype=np.int32),
    pad_token_id=0,
    max_length=16,
    name="toy/train",
  )


def test_train_inputs_resumed_at_a_step_continue_the_uninterrupted_order():
  config = ml_collections.ConfigDict(
    {
      "batch_size": 4,
      "grad_accum_steps": 1,
      "seed": 3,
      "data": {"bucket_multiple": 4, "max_length": 16},
    }
  )
  split = _split(22)
  per_epoch = data_lib.num_train_batches(split, 4)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  total = 3 * per_epoch

  def rows(start: int) -> list[list[list[int]]]:
    inputs = trainer.train_inputs(split, config, batch_sharding, range(start, total), per_epoch)
    with prefetch.Prefetcher(inputs, depth=2) as batches:
      return [np.asarray(batch["input_ids"]).tolist() for batch in batches]

  full = rows(0)
  assert len(full) == total
  assert full[:per_epoch] != full[per_epoch : 2 * per_epoch]  # Epochs are reshuffled.
  for start in (1, per_epoch, per_epoch + 2):
    assert rows(start) == full[start:]

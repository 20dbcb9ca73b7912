"""`pats_jax.training.prefetch.Prefetcher`: order, exceptions and stopping of its thread."""

from __future__ import annotations

import threading

import pytest

from pats_jax.training import prefetch


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

"""`Prefetcher(items, depth)`: an iterator that produces the next items in a background thread.

The training loop's inputs (a batch read, padded and placed on the devices) are produced by a
thread that runs up to `depth` items ahead of the loop, so the host prepares batch t+1, ...,
t+depth while the device runs step t. Items come out in the order `items` yields them; an
exception raised by `items` is raised by the `next` call that would have returned the item it
replaced; `close()` stops the thread (the loop calls it when it ends, is preempted or fails).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = range(3)


class Prefetcher(Generic[T]):
  """Iterates over `items` in a daemon thread, holding at most `depth` items ready.

  Args:
    items: the iterable to run ahead of the consumer (consumed by the thread only).
    depth: how many produced items may wait for the consumer (>= 1).
    name: the thread's name.
  """

  def __init__(self, items: Iterable[T], *, depth: int = 2, name: str = "prefetch"):
    if depth < 1:
      raise ValueError(f"Prefetcher depth must be >= 1, got {depth}")
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(target=self._produce, args=(items,), name=name, daemon=True)
    self._thread.start()

  def _produce(self, items: Iterable[T]) -> None:
    iterator = iter(items)
    try:
      for item in iterator:
        self._queue.put((_ITEM, item))
        if self._stop.is_set():
          return
      self._queue.put((_END, None))
    except BaseException as error:  # Handed to the consumer, raised there.
      self._queue.put((_ERROR, error))
    finally:
      if hasattr(iterator, "close"):  # A generator stopped early runs its `finally` now.
        iterator.close()

  def __iter__(self) -> Iterator[T]:
    return self

  def __next__(self) -> T:
    if self._done:
      raise StopIteration
    kind, value = self._queue.get()
    if kind == _ITEM:
      return value
    self._done = True
    if kind == _ERROR:
      raise value
    raise StopIteration

  def close(self) -> None:
    """Stops the thread: drops the items it made, waits for the one being made."""
    self._done = True
    self._stop.set()
    while self._thread.is_alive():
      with contextlib.suppress(queue.Empty):  # Unblocks a producer waiting for room.
        self._queue.get(timeout=0.01)
    self._thread.join()
    while not self._queue.empty():  # The thread's last items hold device buffers.
      self._queue.get_nowait()

  def __enter__(self) -> Prefetcher[T]:
    return self

  def __exit__(self, *exc_info: object) -> None:
    self.close()

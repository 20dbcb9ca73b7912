"""Training and evaluation batches from a `TokenizedSplit`, numpy only.

Training: a deterministic permutation per `(seed, epoch)`; length bucketing (the shuffled
examples are cut into windows of `bucket_window` global batches, each window is sorted by
length and cut into batches, and all batches are shuffled again), so that the examples of a
batch have similar lengths; each batch is padded to the next multiple of `bucket_multiple`
(capped at `max_length`), so jit sees at most `ceil(max_length / bucket_multiple)` shapes.

Multi-host: every process computes the same plan (it only needs the lengths) and takes its
own contiguous slice of each global batch; the padded length is taken over the global batch,
so it is the same on every process.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from pats_jax.data.tokenize import TokenizedSplit


def padded_length(longest: int, *, bucket_multiple: int, max_length: int) -> int:
  """Rounds a length up to a multiple of `bucket_multiple`, capped at `max_length`.

  Args:
    longest: the longest row of a batch.
    bucket_multiple: the padding granularity (8 or 16 suit accelerators).
    max_length: the truncation length; the result never exceeds it.

  Returns:
    `min(ceil(longest / bucket_multiple) * bucket_multiple, max_length)`, at least 1.
  """
  rounded = -(-max(longest, 1) // bucket_multiple) * bucket_multiple
  return min(rounded, max_length)


def _check(
  split: TokenizedSplit,
  batch_size: int,
  bucket_multiple: int,
  max_length: int,
  process_index: int,
  process_count: int,
) -> int:
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if bucket_multiple <= 0:
    raise ValueError(f"bucket_multiple must be positive, got {bucket_multiple}")
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f"need 0 <= process_index ({process_index}) < process_count ({process_count})")
  if batch_size % process_count:
    raise ValueError(
      f"the global batch_size {batch_size} must be divisible by process_count {process_count}"
    )
  if len(split) and int(split.lengths.max()) > max_length:
    raise ValueError(
      f"{split.name} holds rows of {int(split.lengths.max())} tokens, more than max_length "
      f"{max_length}; tokenise with max_length={max_length}"
    )
  return batch_size // process_count


def num_train_batches(split: TokenizedSplit, batch_size: int) -> int:
  """Training batches per epoch (the last incomplete global batch is dropped)."""
  return len(split) // batch_size


def num_eval_batches(split: TokenizedSplit, batch_size: int) -> int:
  """Evaluation batches (the last one padded)."""
  return math.ceil(len(split) / batch_size)


def train_plan(
  lengths: np.ndarray, *, batch_size: int, seed: int, epoch: int, bucket_window: int = 64
) -> np.ndarray:
  """The rows of every global training batch of an epoch.

  Args:
    lengths: int `[num_rows]`, tokens per row.
    batch_size: the global batch size.
    seed: the data seed (non-negative).
    epoch: the epoch number (non-negative); each epoch has its own order.
    bucket_window: global batches per length-sorting window; 0 or 1 disables bucketing.

  Returns:
    int64 `[num_batches, batch_size]`; each row of the split appears at most once.
  """
  if seed < 0 or epoch < 0:
    raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
  num_rows = lengths.shape[0]
  num_batches = num_rows // batch_size
  if num_batches == 0:
    raise ValueError(f"{num_rows} examples are fewer than one batch of {batch_size}")
  rng = np.random.default_rng([seed, epoch])
  order = rng.permutation(num_rows)[: num_batches * batch_size]
  if bucket_window > 1:
    window = bucket_window * batch_size
    for start in range(0, order.shape[0], window):
      chunk = order[start : start + window]
      order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
  plan = order.reshape(num_batches, batch_size)
  plan = plan[rng.permutation(num_batches)]
  return rng.permuted(plan, axis=1)


def train_batches(
  split: TokenizedSplit,
  *,
  batch_size: int,
  seed: int,
  epoch: int,
  start_batch: int = 0,
  bucket_multiple: int = 16,
  max_length: int,
  process_index: int = 0,
  process_count: int = 1,
  bucket_window: int = 64,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's part of each global training batch of one epoch.

  Args:
    split: the tokenised training split.
    batch_size: the global batch size (all processes together).
    seed: the data seed.
    epoch: the epoch; the order is a function of `(seed, epoch)` only.
    start_batch: batches to skip, to resume exactly where a run stopped.
    bucket_multiple: the padded length is a multiple of this (or `max_length`).
    max_length: the tokenisation length (the largest padded length).
    process_index: this process (`jax.process_index()`).
    process_count: the number of processes (`jax.process_count()`).
    bucket_window: global batches per length-sorting window (see `train_plan`).

  Yields:
    `input_ids`, `attention_mask`, `token_type_ids`: int32 `[batch_size // process_count, L]`;
    `labels`: int32 (float32 for regression) `[batch_size // process_count]`.
  """
  per_process = _check(split, batch_size, bucket_multiple, max_length, process_index, process_count)
  plan = train_plan(
    split.lengths, batch_size=batch_size, seed=seed, epoch=epoch, bucket_window=bucket_window
  )
  if not 0 <= start_batch <= plan.shape[0]:
    raise ValueError(f"start_batch {start_batch} outside 0..{plan.shape[0]}")
  mine = slice(process_index * per_process, (process_index + 1) * per_process)
  for rows in plan[start_batch:]:
    length = padded_length(
      int(split.lengths[rows].max()), bucket_multiple=bucket_multiple, max_length=max_length
    )
    own = rows[mine]
    batch = split.gather(own, length)
    batch["labels"] = split.labels[own]
    yield batch


def eval_batches(
  split: TokenizedSplit,
  *,
  batch_size: int,
  bucket_multiple: int = 16,
  max_length: int,
  process_index: int = 0,
  process_count: int = 1,
  sort_by_length: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
  """Yields this process's part of each global evaluation batch; every example exactly once.

  Rows are ordered by length (unless `sort_by_length=False`) to pad less; the last global
  batch is filled up with copies of one of its real rows, with weight 0 and `idx` -1.

  Args:
    split: the tokenised evaluation split.
    batch_size: the global batch size.
    bucket_multiple: the padded length is a multiple of this (or `max_length`).
    max_length: the tokenisation length.
    process_index: this process.
    process_count: the number of processes.
    sort_by_length: order rows by length (the `idx` key says which example each row is).

  Yields:
    The keys of `train_batches` plus `weights` (float32, 1 on real rows, 0 on padding) and
    `idx` (int32, the example's `idx`, -1 on padding).
  """
  per_process = _check(split, batch_size, bucket_multiple, max_length, process_index, process_count)
  num_rows = len(split)
  if num_rows == 0:
    raise ValueError(f"{split.name} has no examples to evaluate")
  order = np.argsort(split.lengths, kind="stable") if sort_by_length else np.arange(num_rows)
  mine = slice(process_index * per_process, (process_index + 1) * per_process)
  for start in range(0, num_rows, batch_size):
    rows = order[start : start + batch_size]
    weights = np.ones(batch_size, dtype=np.float32)
    real = rows.shape[0]
    if real < batch_size:
      rows = np.concatenate([rows, np.full(batch_size - real, rows[0], dtype=rows.dtype)])
      weights[real:] = 0.0
    length = padded_length(
      int(split.lengths[rows].max()), bucket_multiple=bucket_multiple, max_length=max_length
    )
    own = rows[mine]
    batch = split.gather(own, length)
    batch["labels"] = split.labels[own]
    batch["weights"] = weights[mine]
    batch["idx"] = np.where(weights[mine] > 0, split.idx[own], -1).astype(np.int32)
    yield batch

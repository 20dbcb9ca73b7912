"""Benchmark our jitted train step against the PyTorch path: examples per second, side by side.

The PyTorch path is what a user would otherwise run: transformers'
`BertForSequenceClassification` + `torch.optim.AdamW` (weight decay 0.01 on weight matrices,
a linear schedule, gradient clipping to 1.0, dropout on), eager, on the local CPU wheel with
`torch.set_num_threads(<cores>)`. Ours is the trainer's step (`make_train_step` + the
optimizer of `configs/glue.py`), jitted with its state donated, for plain AdamW and PATS.
All load the same checkpoint (all-MiniLM-L6-v2 by default; the classification head is new
in both) and get the same random batch. The three are timed in interleaved rounds, so a
change of machine load hits all alike; it prints examples/s of each and our ratio to
PyTorch's.

  python scripts/bench_torch.py                     # MiniLM-L6, batch 32, length 128
  python scripts/bench_torch.py --model bert-base --rounds 3

torch is a benchmark-time dependency only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from bench_train_step import (
  RANDOM_SHAPES,
  load_average,
  load_model,
  make_jitted_step,
  print_environment,
  random_batch,
  trainer_config,
)


def torch_step_fn(path: str, batch: dict, *, num_updates: int = 1000):
  """`step()`: one eager PyTorch training step of `BertForSequenceClassification` on `batch`."""
  model = transformers.BertForSequenceClassification.from_pretrained(path, num_labels=2)
  model.train()
  decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
  no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
  optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
    lr=2e-5,
    betas=(0.9, 0.999),
    eps=1e-6,
  )
  warmup = num_updates // 10
  scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer,
    lambda t: t / warmup if t < warmup else max(0.0, (num_updates - t) / (num_updates - warmup)),
  )
  inputs = {k: torch.from_numpy(np.asarray(v).astype(np.int64)) for k, v in batch.items()}
  print(f"torch attention implementation: {model.config._attn_implementation}")

  def step() -> float:
    optimizer.zero_grad(set_to_none=True)
    loss = model(**inputs).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=["minilm", *RANDOM_SHAPES], default="minilm")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=4, help="timed rounds (one step of each)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compile)")
  parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
  args = parser.parse_args()

  torch.set_num_threads(args.threads)
  print_environment()
  print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
    f"transformers {transformers.__version__}"
  )
  with tempfile.TemporaryDirectory() as workdir:
    pretrained = load_model(args.model, num_labels=2, dtype=jnp.float32, workdir=workdir)
    batch = random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
    step_torch = torch_step_fn(pretrained.source, batch)
  print(
    f"model {args.model}, batch {args.batch_size}, length {args.length}, float32, "
    f"rounds {args.rounds} (median), warmup {args.warmup}"
  )
  jitted, states = {}, {}
  for name in ("plain", "pats"):
    jitted[name], states[name] = make_jitted_step(pretrained, trainer_config(name))
  del pretrained

  def run(name: str) -> None:
    if name == "torch":
      step_torch()
    else:
      states[name], metrics = jitted[name](states[name], batch)
      jax.block_until_ready((states[name], metrics))

  names = ("torch", "plain", "pats")
  times: dict[str, list[float]] = {name: [] for name in names}
  for round_index in range(args.warmup + args.rounds):
    # Rotate the order each round so that no variant always runs right after another one
    # (on 2 cores the jax step run right after torch's was the slowest in a fixed order).
    shift = round_index % len(names)
    for name in names[shift:] + names[:shift]:
      t0 = time.perf_counter()
      run(name)
      if round_index >= args.warmup:
        times[name].append(time.perf_counter() - t0)

  med = {name: statistics.median(t) for name, t in times.items()}
  labels = {"torch": "torch eager AdamW", "plain": "jax jit AdamW", "pats": "jax jit PATS"}
  for name in names:
    ratio = med["torch"] / med[name]
    print(
      f"{labels[name]:<18} {med[name] * 1e3:9.1f} ms/step  "
      f"{args.batch_size / med[name]:7.2f} examples/s  {ratio:5.2f}x torch's examples/s  "
      f"(min {min(times[name]) * 1e3:.1f}, max {max(times[name]) * 1e3:.1f} ms)"
    )
  for name in ("plain", "pats"):
    per_round = [t / o for t, o in zip(times["torch"], times[name], strict=True)]
    print(
      f"median per-round ratio, {labels[name]} / torch examples/s: "
      f"{statistics.median(per_round):.2f}x"
    )
  print(f"load average at the end {load_average()}")


if __name__ == "__main__":
  main()

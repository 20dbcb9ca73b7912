r"""How does our jitted train step compare with the usual PyTorch fine-tuning step, same shapes?

The PyTorch step is what a user would otherwise run: transformers'
`BertForSequenceClassification` with `torch.optim.AdamW` (weight decay 0.01 on weight
matrices, `fused=True` on a GPU), the same linear warm-up/decay schedule, gradient clipping
to 1.0, dropout on, under `torch.autocast` to bfloat16 when `--dtype bfloat16`; eager
(`torch-eager`) and with the model under `torch.compile` (`torch-compile`, its compile time
is the first call's). Ours is the trainer's step (`scripts.bench.common.jitted_train_step`)
for plain AdamW and PATS, in the same compute dtype. All load the same random checkpoint
of the chosen shape and get the same random batch; they are timed in interleaved rounds.
It prints examples/s of each and the time ratio to `torch-eager` (below 1: faster than it).

  python -m scripts.bench.torch_baseline                                # MiniLM shape, CPU, float32
  python -m scripts.bench.torch_baseline --shape bert-base --dtype bfloat16 --rounds 30   # GPU

torch and transformers are benchmark-time dependencies only.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import torch
import transformers

from scripts.bench import common

VARIANTS = ("torch-eager", "torch-compile", "jax-plain", "jax-pats")


def torch_step(
  model: torch.nn.Module, batch: dict, *, device: str, dtype: str, num_updates: int = 1000
) -> Callable[[], float]:
  """`step()`: one PyTorch training step of `model` on `batch`; returns the loss."""
  decay = [p for p in model.parameters() if p.ndim >= 2]
  no_decay = [p for p in model.parameters() if p.ndim < 2]
  optimizer = torch.optim.AdamW(
    [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
    lr=2e-5,
    betas=(0.9, 0.999),
    eps=1e-6,
    fused=device == "cuda",
  )
  warmup = num_updates // 10
  scheduler = torch.optim.lr_scheduler.LambdaLR(
    optimizer,
    lambda t: t / warmup if t < warmup else max(0.0, (num_updates - t) / (num_updates - warmup)),
  )
  inputs = {
    k: torch.from_numpy(np.asarray(v).astype(np.int64)).to(device) for k, v in batch.items()
  }
  autocast = (
    torch.autocast(device_type=device, dtype=torch.bfloat16)
    if dtype == "bfloat16"
    else contextlib.nullcontext()
  )

  def step() -> float:
    optimizer.zero_grad(set_to_none=True)
    with autocast:
      loss = model(**inputs).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    if device == "cuda":
      torch.cuda.synchronize()
    return float(loss.detach())

  return step


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  common.add_shape_arguments(parser)
  parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
  parser.add_argument("--rounds", type=int, default=4, help="timed rounds")
  parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compiles)")
  args = parser.parse_args(argv)
  device = "cuda" if torch.cuda.is_available() else "cpu"
  transformers.utils.logging.disable_progress_bar()
  if device == "cpu":
    torch.set_num_threads(os.cpu_count() or 1)
  report = common.Report(__doc__.splitlines()[0])
  print(
    f"torch device {device}, {torch.get_num_threads()} threads; shape {args.shape}, batch "
    f"{args.batch_size}, length {args.length}, {args.dtype}; rounds {args.rounds} (medians), "
    f"warmup {args.warmup}"
  )
  calls: dict[str, Callable] = {}
  compile_s: dict[str, float] = {}
  with tempfile.TemporaryDirectory() as tmp:
    pretrained = common.load_random_model(args.shape, dtype=jnp.dtype(args.dtype), folder=tmp)
    batch = common.random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
    torch_variants = [v for v in args.variants if v.startswith("torch")]
    if torch_variants:
      model = transformers.BertForSequenceClassification.from_pretrained(
        pretrained.source, num_labels=2
      ).to(device)
      model.train()
      print(f"torch attention implementation: {model.config._attn_implementation}")
    for name in torch_variants:
      own = copy.deepcopy(model)
      if name == "torch-compile":
        own = torch.compile(own)
      calls[name] = torch_step(own, batch, device=device, dtype=args.dtype)
      t0 = time.perf_counter()
      calls[name]()  # The first call compiles under torch.compile.
      compile_s[name] = time.perf_counter() - t0
  for name in (v for v in args.variants if v.startswith("jax")):
    jitted, state = common.jitted_train_step(
      pretrained, common.trainer_config(name.removeprefix("jax-"))
    )
    compiled, compile_s[name] = common.compile_timed(jitted, state, batch)
    holder = {"state": state}

    def call(compiled=compiled, holder=holder):
      holder["state"], metrics = compiled(holder["state"], batch)
      return holder["state"], metrics

    calls[name] = call
  print("first call / compile: " + ", ".join(f"{n} {s:.1f} s" for n, s in compile_s.items()))
  baseline = "torch-eager" if "torch-eager" in calls else args.variants[0]
  timing = common.time_interleaved(calls, rounds=args.rounds, warmup=args.warmup, baseline=baseline)
  rows = timing.summary(items_per_call=args.batch_size)
  for name, row in rows.items():
    row["compile_s"] = compile_s[name]
  common.print_summary(rows, unit="examples/s", baseline=timing.baseline)
  report.add("batch_size", args.batch_size)
  report.add("variants", rows)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

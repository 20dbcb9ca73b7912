"""End to end on a real GLUE task: length bucketing against fixed padding to 128.

The data path is the trainer's: `pats_jax.data.load_glue` (the TSV folder `$GLUE_DIR`, else
`/work/shared/data/glue`), `tokenize` with the model's tokenizer (max length 128), and
`train_batches` for one epoch with `bucket_multiple=16` (each batch padded to a multiple of
16 over its longest row) or `bucket_multiple=128` (every batch padded to 128). The step is
the trainer's PATS step (`make_train_step`, optimizer of `configs/glue.py`, state donated).

Each padded length compiles once; the executables are built ahead (`lower().compile()`) and
their compile time is reported apart. The two variants then run their epochs' batches
interleaved (batch i of bucketed, batch i of fixed, ...), so a change of machine load hits
both alike. It prints the training examples/s of each (steps only; batches are built ahead), the
padding share, and the wall time of the epoch: measured with `--max_steps 0` (the whole
epoch), else projected from the measured steps as `compile + batches x mean step time`.

  python scripts/bench_e2e.py                          # MRPC, 6 steps of each, projected epoch
  python scripts/bench_e2e.py --task rte --max_steps 0 # a full epoch of each (long on CPU)
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_train_step import (
  RANDOM_SHAPES,
  load_average,
  load_model,
  make_jitted_step,
  print_environment,
  trainer_config,
)

from pats_jax import data


def glue_dir(flag: str) -> pathlib.Path:
  """`--glue_dir`, `$GLUE_DIR` or `/work/shared/data/glue`, whichever is given first."""
  path = pathlib.Path(flag or os.environ.get("GLUE_DIR") or "/work/shared/data/glue")
  if not path.is_dir():
    raise FileNotFoundError(f"GLUE folder {path} not found; pass --glue_dir or set $GLUE_DIR")
  return path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", default="mrpc", help="a GLUE task (mrpc, rte, cola, ...)")
  parser.add_argument("--glue_dir", default="", help="GLUE TSV folder (default $GLUE_DIR)")
  parser.add_argument("--model", choices=["minilm", *RANDOM_SHAPES], default="minilm")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--max_length", type=int, default=128)
  parser.add_argument("--bucket_multiple", type=int, default=16)
  parser.add_argument(
    "--max_steps", type=int, default=6, help="steps of each variant; 0 = the whole epoch"
  )
  parser.add_argument("--method", default="pats", help="config.method of the step")
  args = parser.parse_args()

  print_environment()
  spec = data.get_task(args.task)
  with tempfile.TemporaryDirectory() as workdir:
    pretrained = load_model(
      args.model, num_labels=max(spec.num_labels, 1), dtype=jnp.float32, workdir=workdir
    )
  t0 = time.perf_counter()
  dataset = data.load_glue(spec, "train", source="local", data_dir=glue_dir(args.glue_dir))
  split = data.tokenize(dataset, pretrained.tokenizer, spec, max_length=args.max_length)
  prep = time.perf_counter() - t0
  n_batches = data.num_train_batches(split, args.batch_size)
  print(
    f"task {spec.name}: {len(split)} training examples, {n_batches} batches of "
    f"{args.batch_size}; mean length {split.lengths.mean():.1f} tokens; load + tokenize "
    f"{prep:.1f} s; model {args.model}, method {args.method}"
  )
  steps = n_batches if args.max_steps <= 0 else min(args.max_steps, n_batches)
  variants = {"bucketed": args.bucket_multiple, "fixed": args.max_length}
  regression = spec.num_labels == 1
  if regression:
    raise ValueError("pick a classification task (STS-B is regression)")

  def batches(multiple: int) -> list[dict[str, np.ndarray]]:
    it = data.train_batches(
      split,
      batch_size=args.batch_size,
      seed=0,
      epoch=0,
      bucket_multiple=multiple,
      max_length=args.max_length,
    )
    return [next(it) for _ in range(steps)]

  config = trainer_config(args.method)
  runs = {}
  for name, multiple in variants.items():
    step, state = make_jitted_step(pretrained, config, num_updates=n_batches)
    epoch = batches(multiple)
    t0 = time.perf_counter()
    compiled = {}
    for batch in epoch:
      length = batch["input_ids"].shape[1]
      if length not in compiled:
        compiled[length] = step.lower(state, batch).compile()
    # The whole epoch's lengths (for the projection), and the compile time of the ones run.
    all_lengths = {
      b["input_ids"].shape[1]
      for b in data.train_batches(
        split,
        batch_size=args.batch_size,
        seed=0,
        epoch=0,
        bucket_multiple=multiple,
        max_length=args.max_length,
      )
    }
    compile_s = time.perf_counter() - t0
    tokens = sum(int(b["attention_mask"].sum()) for b in epoch)
    padded = sum(b["attention_mask"].size for b in epoch)
    runs[name] = {
      "state": state,
      "epoch": epoch,
      "compiled": compiled,
      "times": [],
      "compile_s": compile_s,
      "lengths": all_lengths,
      "pad": 1 - tokens / padded,
    }
  del pretrained

  for i in range(steps):
    for run in runs.values():
      batch = run["epoch"][i]
      t0 = time.perf_counter()
      run["state"], metrics = run["compiled"][batch["input_ids"].shape[1]](run["state"], batch)
      jax.block_until_ready((run["state"], metrics))
      run["times"].append(time.perf_counter() - t0)

  rate = {}
  for name, run in runs.items():
    total = sum(run["times"])
    rate[name] = steps * args.batch_size / total
    per_compile = run["compile_s"] / len(run["compiled"])
    epoch_s = per_compile * len(run["lengths"]) + n_batches * total / steps
    kind = "measured" if steps == n_batches else "projected"
    print(
      f"{name:<9} (bucket_multiple {variants[name]:3d}): {rate[name]:6.2f} examples/s, "
      f"median step {statistics.median(run['times']) * 1e3:8.1f} ms, padding "
      f"{run['pad']:5.1%}, {len(run['lengths'])} padded lengths in the epoch, compile "
      f"{per_compile:.1f} s each; epoch wall time ({kind}) {epoch_s / 60:.1f} min"
    )
  print(
    f"bucketing speed-up: {rate['bucketed'] / rate['fixed']:.2f}x examples/s over fixed "
    f"padding to {args.max_length}"
  )
  print(f"load average at the end {load_average()}")


if __name__ == "__main__":
  main()

r"""End to end on a GLUE task: how much faster does training run with length bucketing than padded?

The data path is the trainer's: `pats_jax.data.load_glue` from a local GLUE folder
(`--glue_dir`, else `$GLUE_DIR`, else `./glue_data`; the `download_glue_data.py` layout),
`tokenize` with the model's tokenizer (timed: load + tokenise), and `train_batches` for one
epoch with `bucket_multiple` 16 (each batch padded to a multiple of 16 over its longest row)
or equal to `--max_length` (every batch padded to it). The step is the trainer's
(`scripts.bench.common.jitted_train_step`, method `--method`). The model is any name or folder
the trainer accepts (`pats_jax.training.sources.resolve_model`), all-MiniLM-L6-v2 by default.

Each padded length is compiled ahead (`lower().compile()`, reported apart). The two
variants then run their batches interleaved (batch i of each, in turn). It prints the
training examples/s of each (mean over the steps: lengths differ), the padding share, and
the epoch's wall time: measured with `--max_steps 0` (the whole epoch), else projected as
`compile time + batches × mean step time`.

  python -m scripts.bench.e2e                            # MRPC, 6 steps of each, projected epoch
  python -m scripts.bench.e2e --task rte --max_steps 0   # a whole epoch of each (long on a CPU)
"""

from __future__ import annotations

import tempfile
import time

import jax.numpy as jnp

from pats_jax import data, models
from pats_jax.training import sources
from scripts.bench import common


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  parser.add_argument("--task", default="mrpc", help="a GLUE classification task")
  parser.add_argument("--glue_dir", default="", help="GLUE folder (default $GLUE_DIR, ./glue_data)")
  parser.add_argument("--model", default="all-MiniLM-L6-v2", help="a trainer model name or folder")
  parser.add_argument("--method", default="pats", help="config.method of the step")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--max_length", type=int, default=128)
  parser.add_argument("--bucket_multiple", type=int, default=16)
  parser.add_argument("--max_steps", type=int, default=6, help="steps of each; 0 = the epoch")
  args = parser.parse_args(argv)
  folder = common.glue_dir(args.glue_dir)
  spec = data.get_task(args.task)
  if spec.num_labels == 1:
    parser.error(f"--task {args.task}: pick a classification task (STS-B is regression)")
  report = common.Report(__doc__.splitlines()[0])
  with tempfile.TemporaryDirectory() as workdir:
    pretrained = models.load(
      sources.resolve_model(args.model, workdir=workdir), num_labels=spec.num_labels
    )
  t0 = time.perf_counter()
  dataset = data.load_glue(spec, "train", source="local", data_dir=folder)
  split = data.tokenize(dataset, pretrained.tokenizer, spec, max_length=args.max_length)
  prep_s = time.perf_counter() - t0
  n_batches = data.num_train_batches(split, args.batch_size)
  steps = n_batches if args.max_steps <= 0 else min(args.max_steps, n_batches)
  print(
    f"task {spec.name}: {len(split)} training examples, {n_batches} batches of "
    f"{args.batch_size}, mean length {split.lengths.mean():.1f} tokens; load + tokenise "
    f"{prep_s:.2f} s; model {args.model}, method {args.method}, {steps} steps of each"
  )

  def epoch(multiple: int):
    return data.train_batches(
      split,
      batch_size=args.batch_size,
      seed=0,
      epoch=0,
      bucket_multiple=multiple,
      max_length=args.max_length,
    )

  config = common.trainer_config(args.method)
  multiples = {"bucketed": args.bucket_multiple, "fixed": args.max_length}
  calls, facts = {}, {}
  for name, multiple in multiples.items():
    step, state = common.jitted_train_step(pretrained, config, num_updates=n_batches)
    batches = [b for _, b in zip(range(steps), epoch(multiple), strict=False)]
    batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    lengths = {b["input_ids"].shape[1] for b in epoch(multiple)}
    t0 = time.perf_counter()
    compiled = {}
    for batch in batches:
      if batch["input_ids"].shape[1] not in compiled:
        compiled[batch["input_ids"].shape[1]] = step.lower(state, batch).compile()
    compile_s = (time.perf_counter() - t0) / len(compiled)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    facts[name] = {
      "bucket_multiple": multiple,
      "padding": 1 - tokens / sum(b["attention_mask"].size for b in batches),
      "padded_lengths_in_epoch": len(lengths),
      "compile_s_per_length": compile_s,
    }
    holder = {"state": state, "next": 0}

    def call(holder=holder, batches=batches, compiled=compiled):
      batch = batches[holder["next"] % len(batches)]
      holder["next"] += 1
      holder["state"], metrics = compiled[batch["input_ids"].shape[1]](holder["state"], batch)
      return holder["state"], metrics

    calls[name] = call

  timing = common.time_interleaved(calls, rounds=steps, warmup=0, baseline="fixed")
  rows = timing.summary(items_per_call=args.batch_size)
  for name, row in rows.items():
    total = sum(timing.times[name])
    row.update(facts[name])
    row["examples_per_s"] = steps * args.batch_size / total
    lengths = row["padded_lengths_in_epoch"]
    row["epoch_s"] = row["compile_s_per_length"] * lengths + n_batches * total / steps
    row["epoch_measured"] = steps == n_batches
  common.print_summary(rows, unit="examples/s", baseline=timing.baseline)
  for name, row in rows.items():
    kind = "measured" if row["epoch_measured"] else "projected"
    print(
      f"{name:<9} bucket_multiple {row['bucket_multiple']:3d}: {row['examples_per_s']:8.2f} "
      f"examples/s (mean), padding {row['padding']:5.1%}, {row['padded_lengths_in_epoch']} "
      f"padded lengths in the epoch, compile {row['compile_s_per_length']:.1f} s each; epoch "
      f"{row['epoch_s'] / 60:.2f} min ({kind})"
    )
  speedup = rows["bucketed"]["examples_per_s"] / rows["fixed"]["examples_per_s"]
  print(f"bucketing: {speedup:.2f}x the examples/s of padding to {args.max_length}")
  report.add("task", spec.name)
  report.add("tokenize_s", prep_s)
  report.add("variants", rows)
  report.add("bucketing_speedup", speedup)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

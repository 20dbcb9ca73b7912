r"""How fast is the trainer's jitted step, PATS against plain AdamW, and what MFU does it reach?

The step is the trainer's own (`pats_jax.training.steps.make_train_step` with the optimizer
`make_optimizer` builds from `configs/glue.py`: gradient clipping, warm-up/decay schedule,
dropout on), jitted with its state donated, on a random BERT of the chosen shape
(`scripts.bench.common.SHAPES`) and a random full-length batch. For each batch size the
variants are compiled (the compile time and the compiled step's number of operations are
printed) and then timed in interleaved rounds against `plain`. It prints per variant the
median step time, examples per second, the time ratio to `plain` (PATS overhead = ratio − 1)
and, on a GPU, the MFU from the analytic FLOP count of `scripts.bench.common`
(`train_step_flops`) against the device's peak. The batch size with the most plain
examples/s is reported as the best one.

  python -m scripts.bench.train_step                  # MiniLM shape, batch 32, length 128
  python -m scripts.bench.train_step --shape bert-base --dtype bfloat16 --batch_size 32 64 128 256
  python -m scripts.bench.train_step --shape bert-base --rounds 0   # compile and count only

`--scan_layers` loads the model with its layers stacked under `nn.scan` (one leaf per weight
kind) when `pats_jax.models.load` supports it; `--scan_unroll K` runs K of them per loop
iteration, 0 all of them without a loop (`model_config.scan_unroll`). `--profile FILE` writes
the top operations of a profiler trace of the last batch size's first variant to FILE.
"""

from __future__ import annotations

import pathlib

import jax.numpy as jnp

from pats_jax import models
from scripts.bench import common, xla

METHODS = ("plain", "pats")


def bench_batch(pretrained, args, batch_size: int) -> dict:
  """Compiles and times the variants at `batch_size`; returns their summary rows."""
  batch = common.random_batch(pretrained.config.vocab_size, batch_size, args.length)
  calls, rows_extra = {}, {}
  for method in args.variants:
    jitted, state = common.jitted_train_step(pretrained, common.trainer_config(method))
    compiled, seconds = common.compile_timed(jitted, state, batch)
    ops = xla.operation_counts(compiled)
    rows_extra[method] = {"compile_s": seconds, "operations": sum(ops.values())}
    print(
      f"batch {batch_size} {method}: compiled in {seconds:.1f} s, {sum(ops.values())} operations "
      f"({', '.join(f'{op} {n}' for op, n in ops.most_common(4))})"
    )
    holder = {"state": state}

    def call(compiled=compiled, holder=holder):
      holder["state"], metrics = compiled(holder["state"], batch)
      return holder["state"], metrics

    calls[method] = call
  flops = common.train_step_flops(
    common.shape_config(args.shape), batch_size=batch_size, length=args.length
  )
  result = {"flops_per_step": flops, "variants": rows_extra}
  if args.rounds > 0:
    timing = common.time_interleaved(
      calls, rounds=args.rounds, warmup=args.warmup, baseline=args.variants[0]
    )
    rows = timing.summary(items_per_call=batch_size)
    peak = common.peak_flops(args.dtype)
    for method, row in rows.items():
      row.update(rows_extra[method])
      row["mfu"] = flops / (row["median_ms"] / 1e3) / peak if peak else None
    print(f"\n== batch {batch_size} x {args.length}: {flops / 1e9:.3f} GFLOP per step (analytic)")
    common.print_summary(rows, unit="examples/s", baseline=timing.baseline)
    if peak:
      print("MFU: " + ", ".join(f"{m} {row['mfu']:.1%}" for m, row in rows.items()))
    if "pats" in rows and timing.baseline == "plain":
      row = rows["pats"]
      print(
        f"PATS overhead: {row['time_ratio'] - 1:+.1%} (medians), "
        f"{row['round_ratio'] - 1:+.1%} (median per-round ratio)"
      )
    result["variants"] = rows
  if args.profile and batch_size == args.batch_size[-1]:
    first = args.variants[0]
    text = xla.profile_summary(calls[first], calls=5)
    pathlib.Path(args.profile).write_text(
      f"train step {first}, {args.shape}, {args.dtype}, batch {batch_size} x {args.length}\n" + text
    )
    print(f"profile summary of {first} written to {args.profile}")
  return result


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  common.add_shape_arguments(parser, batch_sizes=True)
  parser.add_argument("--variants", nargs="+", choices=METHODS, default=list(METHODS))
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds; 0 = compile only")
  parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
  parser.add_argument("--scan_layers", action="store_true", help="layers under nn.scan")
  parser.add_argument(
    "--scan_unroll", type=int, default=1, help="with --scan_layers: layers per iteration (0: all)"
  )
  parser.add_argument("--profile", default="", help="write a profile summary to this file")
  args = parser.parse_args(argv)
  report = common.Report(__doc__.splitlines()[0])
  if args.scan_layers and not common.supports_scan_layers():
    parser.error("--scan_layers: pats_jax.models.load has no scan_layers option in this version")
  scan_layers = models.layer_layout(args.scan_layers, args.scan_unroll)
  pretrained = common.load_random_model(
    args.shape, dtype=jnp.dtype(args.dtype), scan_layers=scan_layers
  )
  print(
    f"shape {args.shape}, compute {args.dtype}, length {args.length}, scan_layers "
    f"{args.scan_layers}, scan_unroll {args.scan_unroll}, rounds {args.rounds} (medians), "
    f"warmup {args.warmup}"
  )
  results = {}
  for batch_size in args.batch_size:
    results[batch_size] = bench_batch(pretrained, args, batch_size)
  report.add("batches", results)
  timed = {b: r["variants"][args.variants[0]] for b, r in results.items() if args.rounds > 0}
  if timed:
    best = max(timed, key=lambda b: timed[b]["per_second"])
    report.add("best_batch_size", best)
    print(f"best batch size ({args.variants[0]} examples/s): {best}")
  return report.finish(args.json)


if __name__ == "__main__":
  main()

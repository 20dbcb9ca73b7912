r"""How much memory does PATS add: optimizer state bytes per parameter, and the step's peak?

State: the trainer's optimizer (`make_optimizer` from `configs/glue.py`) is initialised
abstractly (`jax.eval_shape`, nothing allocated) for a model of the chosen shape, and its
arrays are counted for plain AdamW and for PATS with float32 and bfloat16 EMAs, with and
without the uncertainty EMA (`beta2`). Bytes per parameter divide by all of the model's
parameters; PATS' own share is its EMAs (`PatsState.sensitivity` and `.uncertainty`), which
cover only the parameters PATS selects (its noise mask). Each variant's state over plain
AdamW's is `extra_bytes` = EMA bytes per selected parameter × selected parameters + a few
bytes of its own that do not grow with the model (PATS' step count and PRNG key).

Peak: the trainer's train step (state donated) is compiled for each variant and XLA's
`memory_analysis()` gives the argument, output, aliased (donated and reused) and temporary
bytes; the peak is `arguments + outputs − aliased + temporaries`.

  python -m scripts.bench.memory                       # MiniLM shape, batch 32, length 128
  python -m scripts.bench.memory --shape bert-base --dtype bfloat16
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

import pats_jax
from scripts.bench import common

MiB = 2**20
VARIANTS = {  # name: (method, pats overrides)
  "plain AdamW": ("plain", {}),
  "PATS, fp32 EMA": ("pats", {}),
  "PATS, bf16 EMA": ("pats", {"ema_dtype": "bfloat16"}),
  "PATS+unc., fp32 EMAs": ("pats", {"beta2": 0.85}),
  "PATS+unc., bf16 EMAs": ("pats", {"beta2": 0.85, "ema_dtype": "bfloat16"}),
}


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays (or shape-dtype structs) in `tree`."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  common.add_shape_arguments(parser)
  parser.add_argument(
    "--peak_variants",
    nargs="+",
    choices=sorted(VARIANTS),
    default=["plain AdamW", "PATS, fp32 EMA", "PATS, bf16 EMA"],
    help="variants whose step is compiled for the peak memory",
  )
  args = parser.parse_args(argv)
  from pats_jax.training import optimizers, steps

  report = common.Report(__doc__.splitlines()[0])
  pretrained = common.load_random_model(args.shape, dtype=jnp.dtype(args.dtype))
  params = pretrained.params
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(
    f"shape {args.shape}: {n_params:,} parameters, {tree_bytes(params) / MiB:.1f} MiB; "
    f"compute {args.dtype}"
  )

  print("\n== optimizer state, bytes per model parameter (EMAs also per selected parameter) ==")
  print(
    f"{'variant':<22} {'whole state':>12} {'PATS EMAs':>10} {'per selected':>13} "
    f"{'over AdamW (B)':>15} {'total MiB':>10}"
  )
  state_rows = {}
  for name, (method, overrides) in VARIANTS.items():
    optimizer = optimizers.make_optimizer(common.trainer_config(method, **overrides), 1000)
    state = jax.eval_shape(optimizer.tx.init, params)
    pats_state = pats_jax.find_pats_state(state)
    emas = selected = 0
    if pats_state is not None:
      emas = tree_bytes(pats_state.sensitivity) + tree_bytes(pats_state.uncertainty)
      selected = sum(x.size for x in jax.tree.leaves(pats_state.sensitivity))
    total = tree_bytes(state)
    state_rows[name] = {
      "bytes": total,
      "bytes_per_param": total / n_params,
      "ema_bytes_per_param": emas / n_params,
      "selected_params": selected,
      "ema_bytes_per_selected_param": emas / selected if selected else 0.0,
    }
  for name, row in state_rows.items():
    row["extra_bytes"] = row["bytes"] - state_rows["plain AdamW"]["bytes"]
    print(
      f"{name:<22} {row['bytes_per_param']:12.3f} {row['ema_bytes_per_param']:10.3f} "
      f"{row['ema_bytes_per_selected_param']:13.3f} {row['extra_bytes']:15,} "
      f"{row['bytes'] / MiB:10.1f}"
    )
  selected = max(row["selected_params"] for row in state_rows.values())
  print(f"PATS selects {selected:,} of the {n_params:,} parameters ({selected / n_params:.2%})")

  print(
    f"\n== peak memory of the compiled train step, batch {args.batch_size} x {args.length} (MiB) =="
  )
  print(f"{'variant':<22} {'args':>8} {'outputs':>8} {'aliased':>8} {'temp':>8} {'peak':>8}")
  batch = common.random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
  peak_rows = {}
  for name in args.peak_variants:
    method, overrides = VARIANTS[name]
    optimizer = optimizers.make_optimizer(common.trainer_config(method, **overrides), 1000)
    step = steps.make_train_step(pretrained.module, optimizer, seed=0, regression=False)
    state = jax.eval_shape(lambda p, tx=optimizer.tx: steps.init_state(p, tx), params)
    mem = jax.jit(step, donate_argnums=0).lower(state, batch).compile().memory_analysis()
    row = {
      "arguments": mem.argument_size_in_bytes,
      "outputs": mem.output_size_in_bytes,
      "aliased": mem.alias_size_in_bytes,
      "temporaries": mem.temp_size_in_bytes,
    }
    row["peak"] = row["arguments"] + row["outputs"] - row["aliased"] + row["temporaries"]
    peak_rows[name] = row
    print(f"{name:<22} " + " ".join(f"{value / MiB:8.1f}" for value in row.values()))
  if "plain AdamW" in peak_rows:
    base = peak_rows["plain AdamW"]["peak"]
    for name, row in peak_rows.items():
      row["peak_ratio"] = row["peak"] / base
      if name != "plain AdamW":
        print(f"{name}: peak {row['peak_ratio'] - 1:+.1%} vs plain AdamW")
  report.add("parameters", n_params)
  report.add("state", state_rows)
  report.add("peak", peak_rows)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

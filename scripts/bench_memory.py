"""Memory of PATS: its state in bytes per parameter, and the peak memory of a compiled step.

State: the optimizer states are built for the real model's parameters (`init`, no step run)
and their arrays counted, for plain AdamW and for PATS with float32 and bfloat16 EMAs (with
and without the uncertainty EMA). Bytes per parameter divide by all the model's parameters;
PATS' own share is the sensitivity/uncertainty EMAs (`PatsState.sensitivity`, `.uncertainty`).

Peak: the trainer's train step (`make_train_step`, optimizer from `configs/glue.py`, state
donated) is lowered and compiled for each variant, and XLA's `memory_analysis()` gives the
argument, output, alias (donated, reused) and temporary bytes; the peak is
`arguments + outputs - aliased + temporaries`.

  python scripts/bench_memory.py                          # all-MiniLM-L6-v2, batch 32, length 128
  python scripts/bench_memory.py --model bert-base --dtype bfloat16
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
from bench_train_step import (
  RANDOM_SHAPES,
  load_model,
  print_environment,
  random_batch,
  trainer_config,
)

import pats_jax
from pats_jax.training import optimizers, steps

MiB = 2**20


def tree_bytes(tree: Any) -> int:
  """Bytes of the arrays (or shape-dtype structs) in `tree`."""
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


VARIANTS = {  # name: (method, pats overrides)
  "plain AdamW": ("plain", {}),
  "PATS, fp32 EMA": ("pats", {}),
  "PATS, bf16 EMA": ("pats", {"ema_dtype": "bfloat16"}),
  "PATS+unc., fp32 EMAs": ("pats", {"beta2": 0.85}),
  "PATS+unc., bf16 EMAs": ("pats", {"beta2": 0.85, "ema_dtype": "bfloat16"}),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=["minilm", *RANDOM_SHAPES], default="minilm")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument(
    "--peak_variants",
    nargs="+",
    default=["plain AdamW", "PATS, fp32 EMA", "PATS, bf16 EMA"],
    choices=sorted(VARIANTS),
    help="variants whose step is compiled for the peak memory",
  )
  args = parser.parse_args()

  print_environment()
  with tempfile.TemporaryDirectory() as workdir:
    pretrained = load_model(args.model, num_labels=2, dtype=jnp.dtype(args.dtype), workdir=workdir)
  params = pretrained.params
  n_params = sum(x.size for x in jax.tree.leaves(params))
  print(
    f"model {args.model}: {n_params / 1e6:.2f}M parameters, {tree_bytes(params) / MiB:.1f} MiB "
    f"(float32); compute {args.dtype}"
  )

  print("\n== optimizer state, counted from the state trees (bytes per model parameter) ==")
  print(f"{'variant':<22} {'whole state':>12} {'PATS EMAs':>10} {'total MiB':>10}")
  for name, (method, overrides) in VARIANTS.items():
    optimizer = optimizers.make_optimizer(trainer_config(method, **overrides), 1000)
    state = jax.eval_shape(optimizer.tx.init, params)
    pats_state = pats_jax.find_pats_state(state)
    emas = 0
    if pats_state is not None:
      emas = tree_bytes(pats_state.sensitivity) + tree_bytes(pats_state.uncertainty)
    total = tree_bytes(state)
    print(f"{name:<22} {total / n_params:12.3f} {emas / n_params:10.3f} {total / MiB:10.1f}")

  print(
    f"\n== peak memory of the compiled train step (batch {args.batch_size}, length "
    f"{args.length}; memory_analysis, MiB) =="
  )
  print(f"{'variant':<22} {'args':>8} {'outputs':>8} {'aliased':>8} {'temp':>8} {'peak':>8}")
  batch = random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
  peaks = {}
  for name in args.peak_variants:
    method, overrides = VARIANTS[name]
    config = trainer_config(method, **overrides)
    optimizer = optimizers.make_optimizer(config, 1000)
    step = steps.make_train_step(
      pretrained.module, optimizer, seed=0, regression=False, grad_accum_steps=1
    )
    state = jax.eval_shape(lambda p, tx=optimizer.tx: steps.init_state(p, tx), params)
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
    mem = compiled.memory_analysis()
    arg, out = mem.argument_size_in_bytes, mem.output_size_in_bytes
    alias, temp = mem.alias_size_in_bytes, mem.temp_size_in_bytes
    peaks[name] = arg + out - alias + temp
    print(
      f"{name:<22} {arg / MiB:8.1f} {out / MiB:8.1f} {alias / MiB:8.1f} {temp / MiB:8.1f} "
      f"{peaks[name] / MiB:8.1f}"
    )
  if "plain AdamW" in peaks:
    for name, peak in peaks.items():
      if name != "plain AdamW":
        print(f"{name}: peak {peak / peaks['plain AdamW'] - 1:+.1%} vs plain AdamW")


if __name__ == "__main__":
  main()

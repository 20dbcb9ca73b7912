r"""How long does the optimizer update alone take, PATS against AdamW, next to a plain copy?

One optimizer step is `params, state <- apply_updates(params, update(grads, state, params))`,
jitted with `params` and `state` donated, on a parameter tree of a BERT shape
(`scripts.bench.common.SHAPES`, built by `pats_jax.models` from a random checkpoint, with
a 2-class head) filled with random gradients. The reference is `x + 1` over a tree of the
same leaves (donated): the bandwidth one fused elementwise pass reaches on this machine.

Per variant it prints the median step time, the ratio to `adamw` (of the medians and the
median per-round ratio), the achieved bandwidth (the bytes an ideal fused step reads and
writes over the time: AdamW reads grads, params and its two moments and writes three, 7
accesses per parameter; PATS adds a read and a write of its EMA on the noised weight
matrices, two EMAs with `beta2`) and the number of operations of the compiled step (on a
GPU about one kernel launch each).

  python -m scripts.bench.update                               # MiniLM and BERT-base, float32
  python -m scripts.bench.update --shapes minilm --variants adamw pats pats-noise0 --rounds 50

Variants: `adamw` (`pats_jax.adamw`), `pats` (`pats_jax.pats_adamw`, default options),
`pats-noise0` (noise_scale 0: the EMA and statistics without noise), `pats-rank`
(normalize="rank": a sort per matrix), `pats-rbg` (the `rbg` PRNG implementation for the
noise).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

import pats_jax
from scripts.bench import common, xla

VARIANTS = ("adamw", "pats", "pats-noise0", "pats-rank", "pats-rbg")


def make_variant(name: str) -> optax.GradientTransformation:
  """The optimizer of the variant `name` (learning rate 2e-5, noise scale 0.1)."""
  if name == "adamw":
    return pats_jax.adamw(2e-5)
  options: dict[str, Any] = {"noise_scale": 0.1, "key": 0}
  if name == "pats-noise0":
    options["noise_scale"] = 0.0
  elif name == "pats-rank":
    options["normalize"] = "rank"
  elif name == "pats-rbg":
    options["key"] = jax.random.key(0, impl="rbg")
  return pats_jax.pats_adamw(2e-5, **options)


def traffic_bytes(name: str, params: Any) -> int:
  """Bytes an ideal fused step reads and writes (reductions and random bits not counted)."""
  leaves = jax.tree.leaves(params)
  total = sum(7 * x.size * x.dtype.itemsize for x in leaves)
  if name != "adamw":
    mask = jax.tree.leaves(pats_jax.weight_matrix_mask(params))
    total += sum(2 * x.size * x.dtype.itemsize for x, m in zip(leaves, mask, strict=True) if m)
  return total


def random_like(tree: Any, seed: int) -> Any:
  """A tree of the shapes and dtypes of `tree`, filled with N(0, 0.02²)."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return treedef.unflatten(
    [0.02 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
  )


class Carried:
  """A compiled step whose first `donated` arguments are donated and threaded through calls."""

  def __init__(self, compiled: Any, args: tuple, donated: int):
    self.compiled, self.carry, self.rest = compiled, args[:donated], args[donated:]

  def __call__(self) -> Any:
    self.carry = self.compiled(*self.carry, *self.rest)
    return self.carry


def bench_shape(shape: str, args: Any, report: common.Report) -> None:
  """Builds, counts and times every variant on the parameter tree of `shape`."""
  dtype = jnp.dtype(args.dtype)
  params = common.load_random_model(shape, param_dtype=dtype).params
  n = sum(x.size for x in jax.tree.leaves(params))
  print(f"\n== {shape}: {n:,} parameters in {len(jax.tree.leaves(params))} leaves, {dtype}")
  grads = random_like(params, seed=1)

  copy = jax.jit(lambda t: (jax.tree.map(lambda x: x + 1, t),), donate_argnums=0)
  tree = random_like(params, seed=2)
  calls = {"copy": Carried(copy.lower(tree).compile(), (tree,), 1)}
  traffic = {"copy": 2 * n * dtype.itemsize}
  ops = {"copy": xla.operation_counts(calls["copy"].compiled)}
  for name in args.variants:
    opt = make_variant(name)

    def step(params, state, grads, opt=opt):
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    own = jax.tree.map(jnp.copy, params)
    state = jax.jit(opt.init)(own)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(own, state, grads).compile()
    calls[name] = Carried(compiled, (own, state, grads), 2)
    traffic[name] = traffic_bytes(name, own)
    ops[name] = xla.operation_counts(compiled)

  timing = common.time_interleaved(calls, rounds=args.rounds, warmup=args.warmup, baseline="adamw")
  rows = timing.summary()
  for name, row in rows.items():
    row["GB_per_s"] = traffic[name] / (row["median_ms"] / 1e3) / 1e9
    row["fraction_of_copy"] = row["GB_per_s"] / (
      traffic["copy"] / rows["copy"]["median_ms"] * 1e3 / 1e9
    )
    row["operations"] = sum(ops[name].values())
  common.print_summary(rows, unit="steps/s", baseline=timing.baseline)
  print(f"{'variant':<24} {'GB/s':>8} {'of copy':>8} {'operations':>11}  (most common)")
  for name, row in rows.items():
    detail = ", ".join(f"{op} {count}" for op, count in ops[name].most_common(4))
    print(
      f"{name:<24} {row['GB_per_s']:8.1f} {row['fraction_of_copy']:8.1%} "
      f"{row['operations']:11d}  ({detail})"
    )
  report.add(shape, {"parameters": n, "dtype": str(dtype), "variants": rows})


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  parser.add_argument("--shapes", nargs="+", choices=common.SHAPES, default=["minilm", "bert-base"])
  parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["adamw", "pats"])
  parser.add_argument("--rounds", type=int, default=20, help="timed rounds")
  parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  args = parser.parse_args(argv)
  args.variants = ["adamw"] + [v for v in args.variants if v != "adamw"]  # the baseline
  report = common.Report(__doc__.splitlines()[0])
  print(f"rounds {args.rounds} (medians), warmup {args.warmup}")
  for shape in args.shapes:
    bench_shape(shape, args, report)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

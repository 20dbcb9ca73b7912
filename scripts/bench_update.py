"""Benchmark the optimizer update alone: `pats(adamw)` against `adamw`, and a plain copy.

One optimizer step is `params, state <- apply_updates(params, update(grads, state,
params))`, jitted with `params` and `state` donated, on a parameter tree shaped like
MiniLM-L6-H384 (22.7M parameters) or BERT-base (110M) with a 2-class head, filled with
random values. Per variant it prints the median step time, the ratio to `adamw`, and the
achieved bandwidth: the bytes the step must read and write (grads, params, AdamW's two
moments, PATS' EMAs on the weight matrices) over the time. The reference is a copy of the
same number of bytes (`x + 1` over a tree of the parameters' size, donated), timed in the
same run: the memory bandwidth a fused elementwise pass reaches on this machine. The
variants are timed in interleaved rounds, so a change of machine load hits all alike.

  python scripts/bench_update.py                       # both trees, float32
  python scripts/bench_update.py --trees minilm --steps 50 --variants adamw pats pats-rank
  python scripts/bench_update.py --kernels              # op counts of the compiled step only

`--kernels` prints, per variant, the operations of the compiled step's entry computation by
kind (fusions, reductions, copies, ...) instead of timing it: on a GPU each is about one
kernel launch, which is what bounds an update over a tree of ~200 small leaves there.

Variants: `adamw` (`pats_jax.adamw`), `pats` (`pats_jax.pats_adamw`, default knobs),
`pats-noise0` (noise_scale=0: EMAs only, no noise drawn), `pats-rank`
(normalize="rank"), `pats-gaussian`, `pats-uncertainty` (beta2=0.85, one more EMA),
`pats-rbg` (the `rbg` PRNG instead of threefry: faster bits, but noise not guaranteed
identical across shardings), `pats-hashfree` (the default with the 20-round Threefry hash
replaced by one multiply: not random, so not an option, but the bound on what any cheaper
noise generator could gain), `pats-batched` (`batch_reductions=True`: the per-leaf
statistics in one reduction per group of same-shaped leaves).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from bench_env import cpu_name

import pats_jax
from pats_jax import _threefry

TREES = {  # vocab, hidden, layers, intermediate, max positions
  "minilm": (30522, 384, 6, 1536, 512),
  "bert-base": (30522, 768, 12, 3072, 512),
  "tiny": (1000, 32, 2, 64, 64),  # for the script's own test
}
VARIANTS = (
  "adamw",
  "pats",
  "pats-noise0",
  "pats-rank",
  "pats-gaussian",
  "pats-uncertainty",
  "pats-rbg",
  "pats-hashfree",
  "pats-batched",
)


def tree_shapes(vocab: int, hidden: int, layers: int, inter: int, positions: int) -> dict:
  """Hugging Face BERT's parameter layout (Flax names), with a 2-class classifier."""
  dense = lambda i, o: {"kernel": (i, o), "bias": (o,)}
  ln = {"scale": (hidden,), "bias": (hidden,)}
  layer = {
    "attention": {
      "self": {
        "query": dense(hidden, hidden),
        "key": dense(hidden, hidden),
        "value": dense(hidden, hidden),
      },
      "output": {"dense": dense(hidden, hidden), "LayerNorm": ln},
    },
    "intermediate": {"dense": dense(hidden, inter)},
    "output": {"dense": dense(inter, hidden), "LayerNorm": ln},
  }
  return {
    "embeddings": {
      "word_embeddings": {"embedding": (vocab, hidden)},
      "position_embeddings": {"embedding": (positions, hidden)},
      "token_type_embeddings": {"embedding": (2, hidden)},
      "LayerNorm": ln,
    },
    "encoder": {"layer": {str(i): layer for i in range(layers)}},
    "pooler": {"dense": dense(hidden, hidden)},
    "classifier": dense(hidden, 2),
  }


def random_tree(shapes: dict, dtype: Any, seed: int) -> Any:
  leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  make = jax.jit(lambda k, shape: 0.02 * jax.random.normal(k, shape, dtype), static_argnums=1)
  return treedef.unflatten([make(k, s) for k, s in zip(keys, leaves, strict=True)])


def make_variant(name: str) -> optax.GradientTransformation:
  if name == "adamw":
    return pats_jax.adamw(2e-5)
  kw: dict[str, Any] = {"noise_scale": 0.1, "key": 0}
  if name == "pats-noise0":
    kw["noise_scale"] = 0.0
  elif name == "pats-rank":
    kw["normalize"] = "rank"
  elif name == "pats-gaussian":
    kw["distribution"] = "gaussian"
  elif name == "pats-uncertainty":
    kw["beta2"] = 0.85
  elif name == "pats-rbg":
    kw["key"] = jax.random.key(0, impl="rbg")
  elif name == "pats-batched":
    kw["batch_reductions"] = True
  return pats_jax.pats_adamw(2e-5, **kw)


@contextlib.contextmanager
def hash_stand_in():
  """Traces the noise with the Threefry hash replaced by one multiply and xor.

  The "noise" it gives is not random: it times the update as if the random bits were free.
  """
  real = _threefry._threefry2x32
  _threefry._threefry2x32 = lambda k0, k1, x0, x1: (x1 * np.uint32(0x9E3779B9)) ^ k0
  try:
    yield
  finally:
    _threefry._threefry2x32 = real


def traffic_bytes(name: str, params: Any) -> int:
  """Bytes an ideal fused step reads and writes.

  AdamW: read grads, params, mu, nu; write params, mu, nu (7 per parameter). PATS adds,
  on the leaves that get noise, a read and a write of each EMA (ŝ, and û with beta2).
  Reductions (min, max, std) and the random bits are computed, not counted.
  """
  itemsize = jax.tree.leaves(params)[0].dtype.itemsize
  n = sum(x.size for x in jax.tree.leaves(params))
  total = 7 * n * itemsize
  if name != "adamw":
    mask = jax.tree.leaves(pats_jax.weight_matrix_mask(params))
    n_sel = sum(x.size for x, m in zip(jax.tree.leaves(params), mask, strict=True) if m)
    emas = 2 if name == "pats-uncertainty" else 1
    total += 2 * emas * n_sel * itemsize
  return total


# Entry-computation operations that launch no work of their own.
_FREE_OPS = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant"}


def entry_ops(compiled_text: str) -> collections.Counter:
  """Operations of the ENTRY computation of an optimized HLO module's text, by opcode."""
  entry = compiled_text[compiled_text.index("\nENTRY ") :]
  body = entry[entry.index("{") + 1 : entry.index("\n}")]
  ops = collections.Counter()
  for line in body.splitlines():
    match = re.search(r"= (?:\([^=]*?\)|\S+) ([\w-]+)\(", line)
    if match and match.group(1) not in _FREE_OPS:
      ops[match.group(1)] += 1
  return ops


class Timed:
  """A jitted step whose first `donated` arguments are donated and threaded through."""

  def __init__(self, step: Callable, args: tuple, donated: int):
    self.step, self.carry, self.rest = step, args[:donated], args[donated:]
    self.times: list[float] = []

  def run(self, record: bool = True) -> None:
    t0 = time.perf_counter()
    self.carry = self.step(*self.carry, *self.rest)
    jax.block_until_ready(self.carry)
    if record:
      self.times.append(time.perf_counter() - t0)


def bench_tree(tree_name: str, args: argparse.Namespace) -> None:
  """Builds every variant, then times them in interleaved rounds (one step of each per
  round), so that a change of machine load affects all of them alike."""
  dtype = jnp.dtype(args.dtype)
  shapes = tree_shapes(*TREES[tree_name])
  n = sum(int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))
  grads = random_tree(shapes, dtype, seed=1)
  print(
    f"\n== {tree_name}: {n / 1e6:.1f}M parameters, {args.dtype}, "
    f"{n * dtype.itemsize / 2**20:.0f} MiB per tree =="
  )

  copy_tree = random_tree(shapes, dtype, seed=2)
  copy = jax.jit(lambda t: (jax.tree.map(lambda x: x + 1, t),), donate_argnums=0)
  timed = {"copy (x + 1)": Timed(copy.lower(copy_tree).compile(), (copy_tree,), 1)}
  traffic = {"copy (x + 1)": 2 * n * dtype.itemsize}
  for name in args.variants:
    opt = make_variant(name)
    params = random_tree(shapes, dtype, seed=0)

    def step(params, state, grads, opt=opt):
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    state = jax.jit(opt.init)(params)
    tracing = hash_stand_in() if name == "pats-hashfree" else contextlib.nullcontext()
    with tracing:  # compiled here, so the stand-in applies to this variant only
      step = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, grads).compile()
    traffic[name] = traffic_bytes(name, params)
    timed[name] = Timed(step, (params, state, grads), 2)

  if args.kernels:
    for name, t in timed.items():
      ops = entry_ops(t.step.as_text())
      detail = ", ".join(f"{op} {count}" for op, count in ops.most_common())
      print(f"{name:<18} {sum(ops.values()):6d} ops  ({detail})")
    return
  for t in timed.values():
    for _ in range(args.warmup):
      t.run(record=False)
  for _ in range(args.steps):
    for t in timed.values():
      t.run()

  med = {name: statistics.median(t.times) for name, t in timed.items()}
  copy_bw = traffic["copy (x + 1)"] / med["copy (x + 1)"] / 1e9
  for name, t in timed.items():
    bw = traffic[name] / med[name] / 1e9
    ratio = f"{med[name] / med['adamw']:5.2f}x adamw" if "adamw" in med else ""
    if name == "copy (x + 1)":
      ratio = "(the reference)"
    print(
      f"{name:<18} {med[name] * 1e3:9.2f} ms  {bw:7.1f} GB/s  {bw / copy_bw:6.1%} of copy  "
      f"{ratio}  (min {min(t.times) * 1e3:.2f}, max {max(t.times) * 1e3:.2f} ms)"
    )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--trees", nargs="+", choices=sorted(TREES), default=["minilm", "bert-base"])
  parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["adamw", "pats"])
  parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
  parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compile) first")
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument(
    "--kernels", action="store_true", help="print the compiled steps' operation counts, no timing"
  )
  args = parser.parse_args()
  if "adamw" in args.variants:  # the baseline first, for the ratios
    args.variants = ["adamw"] + [v for v in args.variants if v != "adamw"]

  dev = jax.devices()[0]
  print(
    f"jax {jax.__version__}, optax {optax.__version__}, backend {jax.default_backend()}, "
    f"device {dev.device_kind}, {jax.device_count()} device(s)"
  )
  if dev.platform == "cpu":
    print(
      f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
      f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
  print(f"steps {args.steps} (median reported), warmup {args.warmup}")
  for tree_name in args.trees:
    bench_tree(tree_name, args)


if __name__ == "__main__":
  main()

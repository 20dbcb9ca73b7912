r"""How much does the trainer's loop cost over its bare jitted step, on a tiny model?

The trainer (`pats_jax.training.train_and_evaluate`, config `configs/tiny.py`: the tiny random
BERT and the synthetic GLUE folder it writes into its workdir) runs `--steps` steps with its
own defaults for logging (metrics every step, read one step late), one evaluation and one
checkpoint at the end, and every batch padded to `--length` (one compiled shape). Its train
step is wrapped (for this measurement only, by patching `pats_jax.training.steps.jit_steps`)
to record when each call starts; the loop's time per step is the time from the return of the
first call (compiled by then) to the first evaluation call (the last step's metrics have
been read by then), over the steps in between. The bare step is the same model's trainer
step (`scripts.bench.common.jitted_train_step`) on a fixed batch of the same shape, timed
call by call. It prints steps/s of both and the loop's time per step over the bare step's.

  python -m scripts.bench.loop                         # PATS, batch 8, length 32, 200 steps
  python -m scripts.bench.loop --method plain --steps 500

`--scan_layers` stacks the layers (`nn.scan`) in both when the installed `pats_jax.models.load`
takes `scan_layers` (the trainer then through `config.model_config.scan_layers`).
"""

from __future__ import annotations

import tempfile
import time
from unittest import mock

from pats_jax import models
from pats_jax.training import sources, steps
from scripts.bench import common


class CallTimes:
  """Wraps `steps.jit_steps` so that the trainer's train and eval calls are time-stamped."""

  def __init__(self):
    self.train_returns: list[float] = []
    self.first_eval: float | None = None
    self._jit_steps = steps.jit_steps

  def jit_steps(self, *args, **kwargs):
    train, evaluate, stats = self._jit_steps(*args, **kwargs)

    def timed_train(*a, **k):
      out = train(*a, **k)
      self.train_returns.append(time.perf_counter())
      return out

    def timed_eval(*a, **k):
      if self.first_eval is None:
        self.first_eval = time.perf_counter()
      return evaluate(*a, **k)

    return timed_train, timed_eval, stats

  def seconds_per_step(self) -> float:
    """(first evaluation − return of the first train call) / (calls − 1)."""
    return (self.first_eval - self.train_returns[0]) / (len(self.train_returns) - 1)


def tiny_config(args, workdir: str):
  """`configs/tiny.py` for `--method`, `--steps` steps, fixed length, one final evaluation."""
  from configs import tiny

  config = tiny.get_config(f"method={args.method}")
  config.max_steps = args.steps
  config.num_epochs = 10_000  # max_steps ends the run
  config.batch_size = args.batch_size
  config.data.max_length = args.length
  config.data.bucket_multiple = args.length
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.write_test_predictions = False
  config.progress_bar = False
  if args.scan_layers:
    config.model_config.scan_layers = True
  return config


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  parser.add_argument("--method", choices=["plain", "pats"], default="pats")
  parser.add_argument("--steps", type=int, default=200)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--length", type=int, default=32)
  parser.add_argument("--scan_layers", action="store_true", help="layers under nn.scan")
  args = parser.parse_args(argv)
  if args.scan_layers and not common.trainer_supports_scan_layers():
    parser.error("--scan_layers: this version's trainer has no config.model_config.scan_layers")
  from pats_jax.training import train_and_evaluate

  report = common.Report(__doc__.splitlines()[0])
  timer = CallTimes()
  with tempfile.TemporaryDirectory() as workdir:
    config = tiny_config(args, workdir)
    with mock.patch.object(steps, "jit_steps", timer.jit_steps):
      train_and_evaluate(config, workdir)
    loop_s = timer.seconds_per_step()
    options = {"scan_layers": True} if args.scan_layers else {}
    pretrained = models.load(
      sources.resolve_model(config.model, workdir=workdir), num_labels=2, **options
    )
  jitted, state = common.jitted_train_step(pretrained, common.trainer_config(args.method))
  batch = common.random_batch(pretrained.config.vocab_size, args.batch_size, args.length)
  compiled, compile_s = common.compile_timed(jitted, state, batch)
  holder = {"state": state}

  def bare():
    holder["state"], metrics = compiled(holder["state"], batch)
    return holder["state"], metrics

  timing = common.time_interleaved({"bare step": bare}, rounds=args.steps, warmup=2)
  bare_s = timing.summary()["bare step"]["median_ms"] / 1e3
  print(
    f"tiny model, {args.method}, batch {args.batch_size} x {args.length}, {args.steps} steps, "
    f"scan_layers {args.scan_layers}"
  )
  print(f"trainer loop: {1 / loop_s:9.1f} steps/s ({loop_s * 1e3:.2f} ms per step)")
  print(f"bare step:    {1 / bare_s:9.1f} steps/s ({bare_s * 1e3:.2f} ms per step, median)")
  print(f"loop / bare time per step: {loop_s / bare_s:.2f}")
  report.add("loop_steps_per_s", 1 / loop_s)
  report.add("bare_steps_per_s", 1 / bare_s)
  report.add("loop_over_bare", loop_s / bare_s)
  report.add("bare_compile_s", compile_s)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

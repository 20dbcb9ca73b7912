r"""How long does `train.py` take from its start to its first training step, on a tiny config?

It starts `python train.py --config configs/tiny.py:method=<method>` (the tiny random BERT and
the synthetic GLUE folder, written into a fresh workdir) for one step with one evaluation at
the end, no checkpoint and no test predictions, and watches the workdir's `metrics.jsonl`:
the time to the first step is from the process start to the first training record there
(written once step 1's loss has been read back: imports, data, model, compile and the step
itself). The whole run's wall time is printed too. With `--repeats N` the run is repeated
and medians reported. A variant with the layers stacked (`nn.scan`) runs as well when
`pats_jax.models.load` takes `scan_layers` and the config has `model_config.scan_layers`.

  python -m scripts.bench.startup
  python -m scripts.bench.startup --method plain --repeats 3

The process inherits this environment: a JAX compilation cache set there
(`JAX_COMPILATION_CACHE_DIR`) makes every run after the first a cached one.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from scripts.bench import common

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def first_step_seconds(
  command: list[str], metrics: pathlib.Path, limit_s: float
) -> tuple[float, float]:
  """Runs `command`; returns (seconds to the first training record in `metrics`, total)."""
  with tempfile.TemporaryFile("w+") as log:
    t0 = time.perf_counter()
    process = subprocess.Popen(
      command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT
    )
    first = None
    while process.poll() is None:
      if time.perf_counter() - t0 > limit_s:
        process.kill()
        process.wait()
        sys.exit(f"{' '.join(command)} took more than {limit_s:.0f} s")
      if first is None and metrics.is_file():
        complete = metrics.read_text().split("\n")[:-1]  # Lines written to their end.
        records = [json.loads(x) for x in complete if x.strip()]
        if any("loss" in record for record in records):
          first = time.perf_counter() - t0
      time.sleep(0.02)
    total = time.perf_counter() - t0
    if process.returncode != 0:
      log.seek(0)
      sys.exit(f"{' '.join(command)} failed (exit {process.returncode}):\n{log.read()[-2000:]}")
  return (total if first is None else first), total


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  parser.add_argument("--method", choices=["plain", "pats"], default="pats")
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--limit_s", type=float, default=300, help="time limit of one run")
  args = parser.parse_args(argv)
  report = common.Report(__doc__.splitlines()[0])
  variants = {"unstacked": []}
  if common.trainer_supports_scan_layers():
    variants["scan_layers"] = ["--config.model_config.scan_layers=True"]
  rows = {}
  for name, extra in variants.items():
    firsts, totals = [], []
    for _ in range(args.repeats):
      with tempfile.TemporaryDirectory() as workdir:
        command = [
          sys.executable,
          str(REPO_ROOT / "train.py"),
          f"--config={REPO_ROOT / 'configs' / 'tiny.py'}:method={args.method}",
          f"--workdir={workdir}",
          "--config.max_steps=1",
          "--config.eval_every_steps=0",
          "--config.checkpoint_every_steps=0",
          "--config.write_test_predictions=False",
          *extra,
        ]
        first, total = first_step_seconds(
          command, pathlib.Path(workdir) / "metrics.jsonl", args.limit_s
        )
      firsts.append(first)
      totals.append(total)
    rows[name] = {
      "first_step_s": statistics.median(firsts),
      "total_s": statistics.median(totals),
      "runs": args.repeats,
    }
    print(
      f"{name:<12} time to first step {rows[name]['first_step_s']:6.1f} s, whole run "
      f"{rows[name]['total_s']:6.1f} s (medians of {args.repeats})"
    )
  report.add("method", args.method)
  report.add("variants", rows)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

r"""Every GPU figure in one command, budgeted to fit 8 minutes on one GPU: log, figures, profile.

Items, in order of value (each a benchmark of this package in its own process, with its
own time limit inside the suite's budget; a failing item does not stop the next):

1. `train_step`: MFU (analytic FLOPs, `scripts.bench.common`) and PATS overhead over plain
   AdamW of the trainer's step, BERT-base shape, bfloat16, length 128, batch 32, 64, 128
   and 256 (the best is the one with the most plain examples/s); the compile time of the
   BERT-base step; a profile of the largest batch's plain step (top operations by time).
2. `torch_baseline`: our jitted step (plain, PATS) against transformers'
   `BertForSequenceClassification` + `torch.optim.AdamW(fused=True)` under bfloat16
   autocast, eager and `torch.compile`, same shapes, batch 32 (examples/s).
3. `loop`: the trainer's loop against its bare jitted step on a tiny model (steps/s).
4. `startup`: time from `python train.py` (tiny config) to its first step.
5. With layers stacked (`nn.scan`), when `pats_jax.models.load` takes `scan_layers`: the
   BERT-base step's compile time and timing at batch 32, with the stacked layers unrolled
   (`--scan_unroll 0`: no loop, 25 optimizer leaves instead of 201, about a quarter fewer
   kernels than separate layers by the CUDA compiler's count; does the time follow?) and as
   one loop, and the loop again.
6. `gpu_attention`: cuDNN against XLA attention (logits, hidden states, gradients).

Output, as flat files in `--out` (default `$OUT`, else `logs/`): `suite.log` (every item's
output as it runs), `figures.json` (the environment, each item's status, wall time and
figures, and a summary of the headline numbers) and `profile.txt`.

  bash scripts/bench/gpu_wheels.sh               # once, where a package registry is reachable
  python -m scripts.bench.gpu_suite              # on the GPU machine, from the repository root
  python -m scripts.bench.gpu_suite --tiny       # tiny shapes on a CPU (TINY=1 does the same)

Packages the GPU machine lacks (the trainer's ml_collections and datasets) travel as wheels
in `.whl/` (git-ignored; `gpu_wheels.sh` downloads them); when that folder holds wheels and
those packages are missing, the suite first installs them into a temporary folder on its
children's `PYTHONPATH`.
`--tiny` runs every item on tiny shapes and few steps (a check that the suite works, not
figures); on a machine without CUDA it leaves `torch.compile` out (its CPU compile of even a
tiny model takes a minute or more).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
WHEELS = REPO_ROOT / ".whl"
BUDGET_S = 470  # A budget, not a measured time: of 8 minutes, what the items may use.
TINY_BUDGET_S = 1800  # Tiny shapes on a (shared) CPU: compiles dominate.
TINY_LIMIT_FACTOR = 4
NEEDED = ("ml_collections", "datasets")  # The trainer's packages a CUDA image may lack.


def install_wheels(site: pathlib.Path, log) -> bool:
  """Installs the wheels of `.whl/` into `site` (no index, no dependencies) when the trainer's
  packages are missing here; False when nothing was installed."""
  wheels = sorted(WHEELS.glob("*.whl"))
  if not wheels or all(importlib.util.find_spec(name) for name in NEEDED):
    return False
  command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
  command += ["--no-compile", "--target", str(site), *map(str, wheels)]
  subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
  return True


def items(
  tiny: bool, *, cuda: bool, scan: bool, trainer_scan: bool, out: pathlib.Path
) -> list[tuple[str, list, int]]:
  """(name, module arguments, time limit in seconds) of every item, in order."""
  if tiny:
    shape, dtype, length = ["--shape", "tiny"], ["--dtype", "float32"], ["--length", "16"]
    batches, rounds = ["--batch_size", "2", "4"], ["--rounds", "2", "--warmup", "1"]
    one_batch, loop_steps = ["--batch_size", "2"], ["--steps", "20"]
  else:
    shape, dtype, length = ["--shape", "bert-base"], ["--dtype", "bfloat16"], ["--length", "128"]
    batches, rounds = (
      ["--batch_size", "32", "64", "128", "256"],
      ["--rounds", "15", "--warmup", "3"],
    )
    one_batch, loop_steps = ["--batch_size", "32"], ["--steps", "300"]
  torch_variants = ["torch-eager", "torch-compile", "jax-plain", "jax-pats"]
  if tiny and not cuda:
    torch_variants.remove("torch-compile")
  result = [
    (
      "train_step",
      [*shape, *dtype, *length, *batches, *rounds, "--profile", str(out / "profile.txt")],
      210,
    ),
    (
      "torch_baseline",
      [*shape, *dtype, *length, *one_batch, *rounds, "--variants", *torch_variants],
      170,
    ),
    ("loop", ["--method", "pats", *loop_steps], 60),
    ("startup", ["--method", "pats"], 60),
  ]
  if scan:
    stacked = [*shape, *dtype, *length, *one_batch, *rounds, "--scan_layers"]
    result.append(("train_step_unrolled", [*stacked, "--scan_unroll", "0"], 120))
    result.append(("train_step_scan", stacked, 90))
  if trainer_scan:
    result.append(("loop_scan", ["--method", "pats", *loop_steps, "--scan_layers"], 60))
  attention = ["--shapes", "tiny", "--batch", "2", "--length", "16"] if tiny else []
  result.append(("gpu_attention", attention, 60))
  return result


def module_of(name: str) -> str:
  """The benchmark module an item runs (`train_step_scan`, `train_step_unrolled`: `train_step`)."""
  return "scripts.bench." + name.removesuffix("_scan").removesuffix("_unrolled")


def run_item(name: str, args: list, limit: float, env: dict, log, figures: pathlib.Path) -> dict:
  """Runs one item under `limit` seconds; its output goes to `log`, its figures are read back."""
  command = [sys.executable, "-m", module_of(name), *args, "--json", str(figures)]
  log.write(f"\n=== {name}: {' '.join(command[1:])} (limit {limit:.0f} s)\n")
  log.flush()
  t0 = time.perf_counter()
  # Its own process group, so that a time-out ends the item's children too (train.py).
  process = subprocess.Popen(
    command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT, start_new_session=True
  )
  try:
    code = process.wait(timeout=limit)
    status = {0: "ok", 2: "skipped"}.get(code, f"failed (exit {code})")
  except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    status = f"timed out ({limit:.0f} s)"
  seconds = time.perf_counter() - t0
  log.write(f"=== {name}: {status} in {seconds:.1f} s\n")
  log.flush()
  result: dict[str, Any] = {"status": status, "seconds": seconds}
  if figures.is_file():
    result["figures"] = json.loads(figures.read_text())
  return result


def headline(results: dict[str, dict]) -> dict[str, Any]:
  """The summary figures: MFU, PATS overhead, torch ratios, loop/bare, compile and start-up."""
  summary: dict[str, Any] = {}
  step = results.get("train_step", {}).get("figures", {})
  if "batches" in step:
    batches = step["batches"]
    best = str(step.get("best_batch_size"))
    first = next(iter(batches))
    for label, batch in (("batch " + first, first), ("best batch " + best, best)):
      variants = batches.get(batch, {}).get("variants", {})
      if "plain" in variants:
        summary[f"MFU plain, {label}"] = variants["plain"].get("mfu")
        summary[f"examples/s plain, {label}"] = variants["plain"].get("per_second")
        summary[f"compile s plain, {label}"] = variants["plain"].get("compile_s")
      if "pats" in variants and "round_ratio" in variants["pats"]:
        summary[f"PATS overhead (per-round median), {label}"] = variants["pats"]["round_ratio"] - 1
        summary[f"PATS overhead (medians), {label}"] = variants["pats"]["time_ratio"] - 1
  for variant, row in (
    results.get("torch_baseline", {}).get("figures", {}).get("variants", {}).items()
  ):
    summary[f"examples/s {variant}"] = row.get("per_second")
    summary[f"first call s {variant}"] = row.get("compile_s")
  for name in ("loop", "loop_scan"):
    loop = results.get(name, {}).get("figures", {})
    if "loop_over_bare" in loop:
      summary[f"{name}: loop / bare time per step"] = loop["loop_over_bare"]
  start = results.get("startup", {}).get("figures", {}).get("variants", {})
  for variant, row in start.items():
    summary[f"train.py time to first step s, {variant}"] = row["first_step_s"]
  for name, label in (("train_step_unrolled", "scan_unroll=0"), ("train_step_scan", "scan_layers")):
    stacked = results.get(name, {}).get("figures", {}).get("batches", {})
    for batch, row in stacked.items():
      for variant, values in row.get("variants", {}).items():
        summary[f"{label} {variant} batch {batch}: compile s"] = values.get("compile_s")
        summary[f"{label} {variant} batch {batch}: examples/s"] = values.get("per_second")
  return summary


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tiny", action="store_true", default=os.environ.get("TINY") == "1")
  parser.add_argument("--out", default=os.environ.get("OUT") or "logs", help="output folder")
  parser.add_argument(
    "--budget_s", type=float, default=None, help="wall-time budget of all items (470; tiny 1800)"
  )
  args = parser.parse_args(argv)
  if args.budget_s is None:
    args.budget_s = TINY_BUDGET_S if args.tiny else BUDGET_S
  t_start = time.perf_counter()
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  # This process only reads versions: it keeps JAX off the GPU, whose memory is the items'.
  os.environ["JAX_PLATFORMS"] = "cpu"
  from scripts.bench import common

  with open(out / "suite.log", "a") as log, tempfile.TemporaryDirectory() as tmp:
    site = pathlib.Path(tmp) / "site"
    paths = [str(REPO_ROOT)]
    if install_wheels(site, log):
      paths.append(str(site))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    environment = common.environment(backend=False)
    for key, value in environment.items():
      log.write(f"# {key}: {value}\n")
    cuda = environment["gpu"] != "none"
    results: dict[str, dict] = {}
    for name, item_args, limit in items(
      args.tiny,
      cuda=cuda,
      scan=common.supports_scan_layers(),
      trainer_scan=common.trainer_supports_scan_layers(),
      out=out,
    ):
      left = args.budget_s - (time.perf_counter() - t_start)
      if left < 20:
        results[name] = {"status": "not run (budget spent)"}
        log.write(f"\n=== {name}: not run, the budget is spent\n")
        continue
      figures = pathlib.Path(tmp) / f"{name}.json"
      limit *= TINY_LIMIT_FACTOR if args.tiny else 1
      results[name] = run_item(name, item_args, min(limit, left), env, log, figures)
    summary = headline(results)
    log.write("\n=== summary\n")
    for key, value in summary.items():
      log.write(f"{key}: {value:.4g}\n" if isinstance(value, float) else f"{key}: {value}\n")
    log.write(f"=== suite done in {time.perf_counter() - t_start:.0f} s\n")
  report = {"environment": environment, "tiny": args.tiny, "summary": summary, "items": results}
  (out / "figures.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
  failed = [n for n, r in results.items() if not r["status"].startswith(("ok", "skipped"))]
  print(
    f"suite done: {len(results) - len(failed)} of {len(results)} items ok or skipped; see {out}"
  )
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())

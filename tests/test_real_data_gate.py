"""The real-data tests' gate: skipped without the GLUE data, failing without it under CI=true.

Each case runs two tests that need the `glue_dir` fixture in a fresh pytest, with `$GLUE_DIR`
and `$CI` set as the case says, and reads its exit status and summary.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_DATA_TESTS = (
  "tests/test_glue_local.py::test_label_names_and_known_label_counts",
  "tests/test_glue_local.py::test_ax_diagnostic",
)
HOW = (
  "set GLUE_DIR to a glue_data folder (the layout of download_glue_data.py from "
  "https://github.com/nyu-mll/GLUE-baselines; see README.md)"
)


def run_real_data_tests(**env: str) -> subprocess.CompletedProcess:
  """Runs `REAL_DATA_TESTS` with `$GLUE_DIR` and `$CI` unset unless `env` sets them."""
  base = {key: value for key, value in os.environ.items() if key not in ("GLUE_DIR", "CI")}
  return subprocess.run(
    [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
     *REAL_DATA_TESTS],
    cwd=REPO_ROOT, env=base | env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip


def summary_notes(done: subprocess.CompletedProcess, marker: str) -> list[str]:
  return [line for line in done.stdout.splitlines() if marker in line]


def test_without_glue_data_the_tests_are_skipped_and_the_summary_says_once_how():
  done = run_real_data_tests()
  assert done.returncode == 0, done.stdout + done.stderr
  assert "2 skipped" in done.stdout
  assert summary_notes(done, "skipped: no GLUE data") == [f"2 tests skipped: no GLUE data; {HOW}"]


@pytest.fixture
def incomplete_glue(tmp_path) -> pathlib.Path:
  """A glue_data folder with CoLA only."""
  for split in ("train", "dev", "test"):
    (tmp_path / "CoLA").mkdir(exist_ok=True)
    (tmp_path / "CoLA" / f"{split}.tsv").write_text("", encoding="utf-8")
  return tmp_path


def test_an_incomplete_folder_is_skipped_outside_ci(incomplete_glue):
  done = run_real_data_tests(GLUE_DIR=str(incomplete_glue))
  assert done.returncode == 0, done.stdout + done.stderr
  assert "2 skipped" in done.stdout
  assert summary_notes(done, "skipped: no GLUE data") == [f"2 tests skipped: no GLUE data; {HOW}"]


@pytest.mark.parametrize("folder", ["absent", "incomplete"])
def test_under_ci_missing_glue_data_fails_the_run(folder, tmp_path, incomplete_glue):
  value = str(tmp_path / "absent") if folder == "absent" else str(incomplete_glue)
  done = run_real_data_tests(CI="true", GLUE_DIR=value)
  assert done.returncode == 1, done.stdout + done.stderr
  problem = (
    f"GLUE_DIR={value} is not a folder"
    if folder == "absent"
    else f"GLUE_DIR={value} lacks SST-2/train.tsv, SST-2/dev.tsv, SST-2/test.tsv and 13 more"
  )
  assert f"CI=true needs the GLUE data: {problem}" in done.stdout, done.stdout
  assert "2 errors" in done.stdout and "skipped" not in done.stdout, done.stdout
  assert summary_notes(done, "tests failed: CI=true") == [
    f"2 tests failed: CI=true needs the GLUE data; {HOW}, or unset CI to skip them"
  ]

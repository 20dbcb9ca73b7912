"""The reader-facing documents: relative links resolve and nothing points outside the repository."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# A markdown link or image target: `[text](target)`, up to a space, `)` or `#`.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
# Paths that only exist on the machine a file was written on: a parent folder beside the
# checkout, or an absolute path under a home or work folder.
_OUTSIDE = re.compile(r"\.\./shared|(?<![\w.])/(?:work|root|home/\w+)/")


def _tracked(*patterns: str) -> list[pathlib.Path]:
  try:
    out = subprocess.run(
      ["git", "ls-files", "-z", "--", *patterns],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      check=True,
    ).stdout
  except (OSError, subprocess.CalledProcessError):
    pytest.skip("not a git checkout")
  return [REPO_ROOT / name for name in out.split("\0") if name]


def _documents() -> list[pathlib.Path]:
  return _tracked("*.md")


def test_there_are_documents_to_check():
  names = {path.relative_to(REPO_ROOT).as_posix() for path in _documents()}
  assert {"README.md", "docs/algorithm.md", "docs/performance.md"} <= names


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve(doc: pathlib.Path):
  broken = []
  for target in _LINK.findall(doc.read_text(encoding="utf-8")):
    if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
      continue
    resolved = (doc.parent / target).resolve()
    if not resolved.exists():
      broken.append(target)
    elif REPO_ROOT not in resolved.parents and resolved != REPO_ROOT:
      broken.append(f"{target} (outside the repository)")
  assert not broken, f"{doc.relative_to(REPO_ROOT)}: broken links {broken}"


def test_no_tracked_file_points_outside_the_repository():
  offenders = []
  for path in _tracked():
    rel = path.relative_to(REPO_ROOT).as_posix()
    if rel == ".ci/run" or path.suffix in {".png", ".npz", ".safetensors"} or not path.is_file():
      continue  # CI alone may point GLUE_DIR at the data beside the checkout.
    try:
      text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
      continue
    offenders += [
      f"{rel}:{number}: {line.strip()[:80]}"
      for number, line in enumerate(text.splitlines(), 1)
      if _OUTSIDE.search(line)
    ]
  assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_test_summary_says_once_how_to_supply_missing_glue_data():
  env = {key: value for key, value in os.environ.items() if key != "GLUE_DIR"}
  done = subprocess.run(
    [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
     "tests/test_glue_local.py::test_label_names_and_known_label_counts",
     "tests/test_glue_local.py::test_ax_diagnostic"],
    cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert done.returncode == 0, done.stdout + done.stderr
  notes = [line for line in done.stdout.splitlines() if "skipped: no GLUE data" in line]
  assert notes == [
    "2 tests skipped: no GLUE data; set GLUE_DIR to a glue_data folder (the layout of "
    "download_glue_data.py from https://github.com/nyu-mll/GLUE-baselines; see README.md)"
  ]

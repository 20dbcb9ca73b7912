"""The reader-facing documents: links resolve, named documents exist, headings are given once."""

from __future__ import annotations

import itertools
import os
import pathlib
import re
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# A markdown link or image target: `[text](target)`, up to a space, `)` or `#`.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
# Paths that only exist on the machine a file was written on: a parent folder beside the
# checkout, or an absolute path under a home or work folder.
_OUTSIDE = re.compile(r"\.\./shared|(?<![\w.])/(?:work|root|home/\w+)/")
# A markdown file named in any text (a bare name, a path in the repository or relative to the
# file), not the tail of a longer name or path; URLs are removed before the search.
_MARKDOWN_NAME = re.compile(r"(?<![\w./$-])((?:\.\.?/)*\w[\w./-]*\.md)\b")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
# A document named in capitals without its extension: a name of upper-case words joined by
# underscores that ends in a document word (spec, design, notes, ...), or one cited by a step or
# section number after it. Constants in code take neither form.
_CAPITAL_DOCUMENT = re.compile(
  r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:SPEC|SPECIFICATION|DESIGN|NOTES|GUIDE|PLAN|RFC|DOCS?)\b"
  r"|\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?=`?,? (?:step|section|§) ?\d)"
)


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


def _text(path: pathlib.Path) -> str | None:
  """The file's text, or None for a binary file or a tracked path absent from the checkout."""
  try:
    return path.read_text(encoding="utf-8")
  except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
    return None


def missing_documents(text: str, origin: pathlib.Path, tracked: set[str]) -> list[str]:
  """The documents `text` (the contents of `origin`) names that are not among `tracked`.

  A markdown name with a folder counts when it resolves from `origin`'s folder or from the
  repository root; one whose first folder is not the repository's (an output path such as
  `out/study.md`) and a bare name count when a tracked file has that name. A name in capitals
  (`_CAPITAL_DOCUMENT`) counts when a tracked file has it as its stem.
  """
  names = {pathlib.PurePosixPath(name).name for name in tracked}
  stems = {pathlib.PurePosixPath(name).stem for name in tracked}
  folders = {name.split("/")[0] for name in tracked if "/" in name}
  here = origin.parent.relative_to(REPO_ROOT).as_posix()
  missing = []
  text = _URL.sub("", text)
  for name in _MARKDOWN_NAME.findall(text):
    candidates = {os.path.normpath(f"{here}/{name}"), os.path.normpath(name)}
    if candidates & tracked:
      continue
    repository_path = "/" in name and name.split("/")[0] in folders | {".", ".."}
    if repository_path or pathlib.PurePosixPath(name).name not in names:
      missing.append(name)
  missing += [name for name in _CAPITAL_DOCUMENT.findall(text) if name not in stems]
  return missing


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


def _headings(text: str) -> list[tuple[int, str]]:
  """(line index, line) of every markdown heading outside fenced code blocks."""
  headings, fenced = [], False
  for index, line in enumerate(text.splitlines()):
    if line.lstrip().startswith("```"):
      fenced = not fenced
    elif not fenced and re.match(r"#{1,6} ", line):
      headings.append((index, line.strip()))
  return headings


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_no_heading_repeats_or_stands_empty(doc: pathlib.Path):
  # A heading is given once per document, and a section has text before the next heading of
  # its level or above.
  text = doc.read_text(encoding="utf-8")
  lines, headings = text.splitlines(), _headings(text)
  names = [line for _, line in headings]
  assert len(names) == len(set(names)), f"{doc.name}: repeated headings {names}"
  level = lambda line: len(line.split(" ")[0])
  for (i, first), (j, second) in itertools.pairwise(headings):
    empty = not any(line.strip() for line in lines[i + 1 : j])
    assert not (empty and level(second) <= level(first)), f"{doc.name}:{i + 1}: empty {first!r}"


def test_named_documents_exist():
  tracked = {path.relative_to(REPO_ROOT).as_posix() for path in _tracked()}
  offenders = []
  for path in _tracked():
    text = _text(path)
    if text is not None:
      rel = path.relative_to(REPO_ROOT).as_posix()
      offenders += [f"{rel}: {name}" for name in missing_documents(text, path, tracked)]
  assert not offenders, "documents the repository lacks:\n" + "\n".join(offenders)


def test_a_named_document_that_is_absent_is_found():
  origin = REPO_ROOT / "pkg" / "module.py"
  # The names are built here, so that this file names no absent document itself.
  spec, cited, md = "ALGO" + "_SPEC", "FOO" + "_BAR", ".md"
  tracked = {"README.md", "docs/algorithm.md", f"docs/results/table{md}", "pkg/module.py"}
  text = (
    f"See {spec}, step 5, and ({spec}{md}); the {spec} holds it. {cited} step 2 and"
    f" `docs/algorithm{md}`, ../README{md}, table{md} and out/table{md} exist;"
    f" docs/gone{md}, ../docs/gone{md}, NOTES{md} and https://example.org/x/NOTES{md}"
  )
  assert missing_documents(text, origin, tracked) == [
    f"{spec}{md}",
    f"docs/gone{md}",
    f"../docs/gone{md}",
    f"NOTES{md}",
    spec,
    spec,
    spec,
    cited,
  ]
  constants = "REPO_ROOT = 1; HEADER_KEYS, BUDGET_S; the PATS step 3; NO_GLUE step"
  assert missing_documents(constants, origin, tracked) == []


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

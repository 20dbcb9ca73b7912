"""The descriptions of config fields, read from the comments beside them in the config files.

A config file documents a field with a comment on its assignment line, or with comment lines
right above it:

  config.batch_size = 32  # Global batch per optimizer update (all processes, all micro-steps).

  # GLUE TSV folder in the download_glue_data.py layout ...
  config.data.data_dir = ""

`field_docs(path)` maps each `config.<dotted.key>` assigned in the file to its comment, and
`describe(config, docs)` lists every field of a config with its value and description, which is
what `python train.py --print_config` prints.
"""

from __future__ import annotations

import ast
import io
import os
import pathlib
import tokenize
from typing import Any

import ml_collections

_MAX_COLUMN = 48  # Where the descriptions start, unless a field's value is longer.


def _dotted(node: ast.expr) -> str | None:
  """`config.a.b` -> "a.b"; None for any other target."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == "config" and parts:
    return ".".join(reversed(parts))
  return None


def field_docs(path: str | os.PathLike[str]) -> dict[str, str]:
  """The description of each field assigned in a config file, from the comments beside it.

  Args:
    path: a config file (`configs/*.py`).

  Returns:
    `{dotted key: description}` for each `config.<key> = ...` with a comment on its line
    (preferred) or on the comment lines right above it (joined), in the order of the file.
  """
  source = pathlib.Path(path).read_text(encoding="utf-8")
  lines = source.splitlines()
  trailing: dict[int, str] = {}
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      row, column = token.start
      if lines[row - 1][:column].strip():
        trailing[row] = token.string.lstrip("#").strip()
  docs: dict[str, str] = {}
  assignments = [
    node
    for node in ast.walk(ast.parse(source))
    if isinstance(node, ast.Assign) and len(node.targets) == 1
  ]
  for node in sorted(assignments, key=lambda node: node.lineno):
    key = _dotted(node.targets[0])
    if key is None:
      continue
    rows = range(node.lineno, node.end_lineno + 1)
    comment = " ".join(trailing[row] for row in rows if row in trailing)
    if not comment:
      above, row = [], node.lineno - 1
      while row >= 1 and lines[row - 1].strip().startswith("#"):
        above.insert(0, lines[row - 1].strip().lstrip("#").strip())
        row -= 1
      comment = " ".join(above)
    if comment:
      docs[key] = comment
  return docs


def leaves(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Every non-ConfigDict field of `config` as `{dotted key: value}`, in insertion order."""
  out: dict[str, Any] = {}
  for key, value in config.items(preserve_field_references=False):
    if isinstance(value, ml_collections.ConfigDict):
      out.update(leaves(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def describe(config: ml_collections.ConfigDict, docs: dict[str, str]) -> str:
  """One line per field: `key = value  # description`, in the order of `docs`, then the rest."""
  order = {key: position for position, key in enumerate(docs)}
  fields = leaves(config)
  fields = {key: fields[key] for key in sorted(fields, key=lambda key: order.get(key, len(order)))}
  assignments = {key: f"{key} = {value!r}" for key, value in fields.items()}
  column = min(max(len(text) for text in assignments.values()) + 2, _MAX_COLUMN)
  lines = []
  for key, assignment in assignments.items():
    doc = docs.get(key, "")
    lines.append(f"{assignment.ljust(column - 2)}  # {doc}" if doc else assignment)
  return "\n".join(lines)

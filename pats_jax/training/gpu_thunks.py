"""How a compiled GPU program launches its kernels: its thunk sequence, read per step.

XLA's GPU backend runs a program as a sequence of thunks: kernels (`kKernel`,
`kCustomKernel`), library calls (`kGemm`, `kCuDnn`, ...), copies (`kCopy`), loops (`kWhile`,
with a condition and a body sequence) and command buffers (`kCommandBuffer`: a CUDA graph that
holds a sequence of thunks and is launched at once). With `xla_dump_to` among a compile's
options, XLA writes the final sequence (`*.thunk_sequence_after_thunk_passes.txt`: one thunk a
line, `NNN: kKind ...`, nested thunks indented under theirs, a loop's under `condition:` and
`body:`) and each thunk's HLO instruction (`*.thunk_metadata.txt`: `profile_annotation` and
`thunk_id`). The optimised HLO (`compiled.as_text()`) gives each loop's trip count
(`compiled_program`).

`launches(sequence, metadata, hlo)` counts, for one run of the program: the command buffers
launched (`graphs`), the thunks launched on their own outside any command buffer
(`ungraphed`), and the thunks inside command buffers (`in_graphs`). A loop's body and condition
count its trip count times (its condition once more, the last test); a loop whose trip count
the HLO does not give counts once.
"""

from __future__ import annotations

import collections
import dataclasses
import pathlib
import re

from pats_jax.training import compiled_program

_THUNK = re.compile(r"^(\s*)(\d+): (k\w+)")
_SECTION = re.compile(r"^(\s*)(condition|body):\s*$")
_ANNOTATION = re.compile(r'profile_annotation: "([^"]*)"\s*thunk_id: (\d+)')
# Thunks that hold others and run nothing of their own.
_CONTAINERS = {"kSequential", "kWhile", "kCommandBuffer", "kConditional"}


@dataclasses.dataclass
class Thunk:
  """One thunk of a sequence, with the thunks it holds (a loop's under "condition"/"body")."""

  thunk_id: int
  kind: str
  children: dict[str, list[Thunk]] = dataclasses.field(default_factory=dict)


def parse_sequence(text: str) -> list[Thunk]:
  """The top-level thunks of a thunk-sequence text, their nested thunks attached (a
  `condition:` or `body:` line opens that section of the last loop above it)."""
  root: list[Thunk] = []
  stack: list[tuple[int, list[Thunk]]] = [(-1, root)]  # (indent, the list to append to)
  last: Thunk | None = None
  for line in text.splitlines():
    section, thunk = _SECTION.match(line), _THUNK.match(line)
    if section and last is not None:
      indent = len(section.group(1))
      while stack[-1][0] >= indent:
        stack.pop()
      stack.append((indent, last.children.setdefault(section.group(2), [])))
    elif thunk:
      indent = len(thunk.group(1))
      while stack[-1][0] >= indent:
        stack.pop()
      node = Thunk(int(thunk.group(2)), thunk.group(3))
      stack[-1][1].append(node)
      if node.kind == "kCommandBuffer":
        stack.append((indent, node.children.setdefault("commands", [])))
      if node.kind == "kWhile":
        last = node
  return root


def annotations(metadata: str) -> dict[int, str]:
  """Each thunk's HLO instruction name, by thunk id, from a thunk-metadata text."""
  return {int(i): name for name, i in _ANNOTATION.findall(metadata)}


@dataclasses.dataclass
class Launches:
  """Launches of one run of a program (the module docstring)."""

  graphs: int = 0
  ungraphed: int = 0
  in_graphs: int = 0
  ungraphed_kinds: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  @property
  def total(self) -> int:
    """What the host launches: command buffers and thunks outside them."""
    return self.graphs + self.ungraphed


def launches(sequence: str, metadata: str, hlo: str) -> Launches:
  """The launches of one run of a program from its dumped thunk sequence and metadata and its
  optimised HLO text."""
  names = annotations(metadata)
  _, computations = compiled_program.parse_module(hlo)
  walker = compiled_program._Walker(computations)
  whiles = {i.name: i for insts in computations.values() for i in insts if i.opcode == "while"}
  result = Launches()

  def trips(thunk: Thunk) -> int:
    inst = whiles.get(names.get(thunk.thunk_id, ""))
    return walker.trip_count(inst)[0] if inst is not None else 1

  def visit(thunks: list[Thunk], times: int, graphed: bool) -> None:
    for thunk in thunks:
      if thunk.kind == "kCommandBuffer":
        result.graphs += 0 if graphed else times
        visit(thunk.children.get("commands", []), times, True)
      elif thunk.kind == "kWhile":
        n = trips(thunk)
        visit(thunk.children.get("condition", []), times * (n + 1), graphed)
        visit(thunk.children.get("body", []), times * n, graphed)
      elif thunk.kind in _CONTAINERS:
        for children in thunk.children.values():
          visit(children, times, graphed)
      elif graphed:
        result.in_graphs += times
      else:
        result.ungraphed += times
        result.ungraphed_kinds[thunk.kind] += times

  visit(parse_sequence(sequence), 1, False)
  return result


def read_dump(folder: pathlib.Path) -> tuple[str, str]:
  """The thunk sequence and metadata texts that a compile with `xla_dump_to=folder` wrote
  (its one module; the last one written when there are several)."""
  sequences = sorted(folder.glob("*.thunk_sequence_after_thunk_passes.txt"))
  metadata = sorted(folder.glob("*.thunk_metadata.txt"))
  if not sequences or not metadata:
    raise FileNotFoundError(f"no thunk sequence was dumped in {folder}")
  return sequences[-1].read_text(), metadata[-1].read_text()

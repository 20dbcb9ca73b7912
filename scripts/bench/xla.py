"""What XLA compiled and ran: operation counts of a compiled step, and a profile summary.

The operation count is a proxy for kernel launches on a GPU (each top-level operation of a
compiled step is about one launch there), which bound a step made of many small operations.
The profile summary sums a `jax.profiler` trace's events by name, per process (host threads,
and on a GPU the device streams, whose events are the kernels).
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import tempfile
from collections.abc import Callable
from typing import Any

import jax

# Entry-computation operations that launch no work of their own.
_FREE_OPS = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant"}


def _computations(text: str) -> dict[str, list[str]]:
  """The instruction lines of each computation of an HLO module's text, by name (ENTRY too)."""
  computations, name = {}, None
  for line in text.splitlines():
    header = re.match(r"^(ENTRY )?%?([\w.-]+) .*\{$", line)
    if header:
      name = "ENTRY" if header.group(1) else header.group(2)
      computations[name] = []
    elif line.startswith("}"):
      name = None
    elif name is not None:
      computations[name].append(line)
  return computations


def _count(name: str, computations: dict[str, list[str]], ops: collections.Counter, times: int):
  for line in computations.get(name, []):
    line = re.sub(r"/\*.*?\*/", "", line)  # Tuple types carry /*index=N*/ comments.
    match = re.search(r"= (?:\([^=]*?\)|\S+) ([\w-]+)\(", line)
    if not match or match.group(1) in _FREE_OPS:
      continue
    if match.group(1) == "while":
      body = re.search(r"body=%?([\w.-]+)", line)
      trips = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
      if body:
        _count(body.group(1), computations, ops, times * int(trips.group(1) if trips else 1))
        continue
    if match.group(1) == "call":  # XLA:CPU wraps loops in calls.
      callee = re.search(r"to_apply=%?([\w.-]+)", line)
      if callee:
        _count(callee.group(1), computations, ops, times)
        continue
    ops[match.group(1)] += times


def operation_counts(compiled: Any) -> collections.Counter:
  """Operations a call of a compiled executable runs, by opcode, from its optimized HLO text.

  The ENTRY computation's operations (a fusion counts as one), with each `call` replaced by
  the called computation's operations and each `while` loop by its body's operations times
  its known trip count (once when unknown), so
  that a model whose layers run under `nn.scan` is counted per layer like an unrolled one.
  On a GPU each operation is about one kernel launch, which bounds a step made of many
  small operations (an update over ~200 parameter leaves).
  """
  ops = collections.Counter()
  _count("ENTRY", _computations(compiled.as_text()), ops, 1)
  return ops


def profile_summary(call: Callable[[], Any], *, calls: int = 5, top: int = 25) -> str:
  """The operations that took the most time over `calls` calls, as text, from a profiler trace.

  `call` runs under `jax.profiler.trace` (with a Perfetto JSON trace); the trace's complete
  events are summed by name per process (host threads, and on a GPU the device's streams,
  whose events are the kernels), and the `top` names by total time of each process listed
  with their count and share. Python frames (names starting with "$") are left out.
  """
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(calls):
        jax.block_until_ready(call())
    traces = sorted(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
    if not traces:
      return "no trace was written\n"
    with gzip.open(traces[-1], "rt") as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  processes = {
    e["pid"]: e["args"]["name"]
    for e in events
    if e.get("ph") == "M" and e.get("name") == "process_name"
  }
  totals: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  for e in events:
    if e.get("ph") == "X" and not str(e.get("name", "$")).startswith("$"):
      process = processes.get(e.get("pid"), str(e.get("pid")))
      totals[process][e["name"]] += float(e.get("dur", 0.0))
      counts[process][e["name"]] += 1
  lines = [f"profile of {calls} calls: total time by operation (microseconds), per process"]
  for process, by_name in totals.items():
    total = sum(by_name.values())
    lines.append(f"\n== {process}: {total / 1e3:.1f} ms in {sum(counts[process].values())} events")
    for name, micros in by_name.most_common(top):
      lines.append(
        f"{micros:12.0f} us {micros / total:6.1%} {counts[process][name]:6d}x  {name[:100]}"
      )
  return "\n".join(lines) + "\n"

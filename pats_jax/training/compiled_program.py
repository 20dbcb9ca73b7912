r"""What a compiled XLA program holds: memory per device, kernels, collectives, estimated cycles.

`program_stats(compiled)` reads `compiled.memory_analysis()` and the optimised HLO text
(`compiled.as_text()`) of a `jax.jit(...).lower(...).compile()` result. The counts walk the
entry computation; a `while` loop's body counts its trip count times (read from the loop's
`known_trip_count`, else from its condition `i < N`), a `call` once, and a `conditional` as
its costliest branch. Within that walk, per device:

- kernels: the instructions that run as a program on the chip (fusions, custom calls, and any
  other array operation), not the bookkeeping ones (parameters, tuples, bitcasts, constants,
  the asynchronous copies between memory spaces) nor scalar arithmetic (`scalar_ops`: the
  integer arithmetic of random-key derivation, loop counters);
- collectives: all-reduce, all-gather, reduce-scatter, all-to-all, collective-permute and
  collective-broadcast, also those fused into a kernel, by kind, with the bytes of their
  results; once per `channel_id` within a computation: the TPU compiler runs one collective
  as a start kernel and continuation kernels (`async_collective_fusion`s) that each hold the
  collective's instruction with its channel, so counting instructions would count one
  all-gather 1-9 times;
- estimated cycles: the sum of `"estimated_cycles"` that the TPU compiler's cost model writes
  into each kernel's backend config. Kernels without one (gathers and scatters run as custom
  kernels) are counted in `unestimated_kernels`, by opcode in `unestimated`, and add nothing:
  neither do collectives, so the estimate
  leaves out communication time. (`compiled.cost_analysis()["optimal_seconds"]` is not used:
  it came back negative for these programs.)

Memory: `total = arguments + outputs − aliased + temporaries + code`, where aliased outputs
reuse their argument's buffer (a donated train state).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import re
from typing import Any

COLLECTIVES = (
  "all-reduce",
  "all-gather",
  "reduce-scatter",
  "all-to-all",
  "collective-permute",
  "collective-broadcast",
)
# Instructions that run no kernel of their own.
_BOOKKEEPING = {
  "parameter",
  "constant",
  "get-tuple-element",
  "tuple",
  "bitcast",
  "after-all",
  "add-dependency",
  "opt-barrier",
  "partition-id",
  "replica-id",
  "copy-start",
  "copy-done",
  "domain",
}
_CONTROL = {"while", "call", "conditional"}
_BITS = {"pred": 8, "bf16": 16, "c64": 64, "c128": 128}
_ARRAY = re.compile(r"\b(pred|[suf]\d+|bf16|f8e\w+|c64|c128)\[([\d,]*)\]")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = (.*)$")
_HEADER = re.compile(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$")
_OPCODE = re.compile(r"^\s*([a-z][a-z0-9\-]*)\(")
_CALLED = re.compile(
  r"\b(calls|body|condition|to_apply|true_computation|false_computation)=%([\w.\-]+)"
)
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_CYCLES = re.compile(r'"estimated_cycles":"(\d+)"')
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')
_FUSION_KIND = re.compile(r"\bkind=k(\w+)")
# An integer scalar constant, its layout (`{:T(128)}` on TPU) optional.
_INT_CONSTANT = re.compile(r"[su]\d+\[\](?:\{[^}]*\})? constant\((-?\d+)\)")
_CHANNEL = re.compile(r"\bchannel_id=(\d+)")


@dataclasses.dataclass(frozen=True)
class Instruction:
  """One HLO instruction: its opcode, result shape text, called computations and estimate."""

  name: str
  opcode: str
  shape: str
  called: dict[str, tuple[str, ...]]
  estimated_cycles: int | None
  trip_count: int | None
  text: str
  channel: int | None = None


def _split_shape(rest: str) -> tuple[str, str]:
  """Splits `<shape> <opcode>(...)...` into the shape text and the rest."""
  if rest.startswith("("):
    depth = 0
    for index, char in enumerate(rest):
      depth += {"(": 1, ")": -1}.get(char, 0)
      if depth == 0:
        return rest[: index + 1], rest[index + 1 :]
  shape, _, tail = rest.partition(" ")
  return shape, " " + tail


def parse_instruction(line: str) -> Instruction | None:
  """The instruction of one line of HLO text, or None when the line holds none."""
  match = _INSTRUCTION.match(line)
  if match is None:
    return None
  shape, tail = _split_shape(match.group(2))
  opcode = _OPCODE.match(tail)
  if opcode is None:
    return None
  called: dict[str, tuple[str, ...]] = {key: (name,) for key, name in _CALLED.findall(tail)}
  branches = _BRANCHES.search(tail)
  if branches:
    called["branches"] = tuple(name.strip().lstrip("%") for name in branches.group(1).split(","))
  cycles, trips = _CYCLES.search(tail), _TRIP_COUNT.search(tail)
  return Instruction(
    name=match.group(1),
    opcode=opcode.group(1),
    shape=shape,
    called=called,
    estimated_cycles=int(cycles.group(1)) if cycles else None,
    trip_count=int(trips.group(1)) if trips else None,
    text=tail,
    channel=int(channel.group(1)) if (channel := _CHANNEL.search(tail)) else None,
  )


def parse_module(text: str) -> tuple[str, dict[str, list[Instruction]]]:
  """The entry computation's name and every computation's instructions, of an HLO module text."""
  computations: dict[str, list[Instruction]] = {}
  entry, current = "", None
  for line in text.splitlines():
    header = _HEADER.match(line)
    if header and not line.startswith(" "):
      current = computations.setdefault(header.group(2), [])
      entry = header.group(2) if header.group(1) else entry
    elif line.startswith("}"):
      current = None
    elif current is not None:
      instruction = parse_instruction(line)
      if instruction is not None:
        current.append(instruction)
  if not entry:
    raise ValueError("the HLO text has no ENTRY computation")
  return entry, computations


def shape_bytes(shape: str) -> int:
  """The bytes of the arrays of a result shape text (all elements of a tuple)."""
  total = 0
  for dtype, dims in _ARRAY.findall(shape):
    bits = _BITS.get(dtype) or (8 if dtype.startswith("f8") else int(dtype[1:]))
    total += math.prod(int(d) for d in dims.split(",") if d) * bits // 8
  return total


def _is_scalar(shape: str) -> bool:
  arrays = _ARRAY.findall(shape)
  return all(math.prod(int(d) for d in dims.split(",") if d) <= 1 for _, dims in arrays)


@dataclasses.dataclass
class Tally:
  """Counts of a walk over a computation (see the module docstring)."""

  kernels: int = 0
  fusions: int = 0
  unestimated_kernels: int = 0
  unestimated: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  scalar_ops: int = 0
  estimated_cycles: int = 0
  collectives: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  collective_bytes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  loops: list[tuple[int, bool]] = dataclasses.field(default_factory=list)

  def add(self, other: Tally, times: int = 1) -> None:
    """Adds `other` counted `times` times."""
    for name in ("kernels", "fusions", "unestimated_kernels", "scalar_ops", "estimated_cycles"):
      setattr(self, name, getattr(self, name) + times * getattr(other, name))
    for opcode, count in other.unestimated.items():
      self.unestimated[opcode] += times * count
    for kind, count in other.collectives.items():
      self.collectives[kind] += times * count
      self.collective_bytes[kind] += times * other.collective_bytes[kind]
    self.loops += other.loops


def _collective_kind(opcode: str) -> str | None:
  """The collective an opcode performs (its `-done` half for asynchronous pairs), else None."""
  base = opcode.removesuffix("-done")
  return base if base in COLLECTIVES and not opcode.endswith("-start") else None


class _Walker:
  def __init__(self, computations: dict[str, list[Instruction]]):
    self.computations = computations

  def trip_count(self, instruction: Instruction) -> tuple[int, bool]:
    """A while loop's trip count and whether it is known (else 1 is assumed)."""
    if instruction.trip_count is not None:
      return instruction.trip_count, True
    condition = self.computations.get(instruction.called.get("condition", ("",))[0], [])
    bounds = [
      int(value)
      for inst in condition
      if inst.opcode == "constant"
      for value in _INT_CONSTANT.findall(f"{inst.shape} {inst.text.strip()}")
    ]
    compares = [inst for inst in condition if inst.opcode == "compare"]
    if len(bounds) == 1 and len(compares) == 1 and "direction=LT" in compares[0].text:
      return bounds[0], True
    return 1, False

  def collectives_in(self, name: str, tally: Tally, channels: set[int]) -> None:
    """Adds the collectives of computation `name` and of those it calls (fused kernels)."""
    for inst in self.computations.get(name, []):
      self.add_collective(inst, tally, channels)
      for called in inst.called.values():
        for callee in called:
          self.collectives_in(callee, tally, channels)

  @staticmethod
  def add_collective(inst: Instruction, tally: Tally, channels: set[int]) -> bool:
    """Counts `inst` if it is a collective whose channel is not in `channels` (then added);
    returns whether `inst` is a collective."""
    kind = _collective_kind(inst.opcode)
    if not kind:
      return False
    if inst.channel is None or inst.channel not in channels:
      tally.collectives[kind] += 1
      tally.collective_bytes[kind] += shape_bytes(inst.shape)
    if inst.channel is not None:
      channels.add(inst.channel)
    return True

  def walk(self, name: str) -> Tally:
    """The counts of computation `name`, run once."""
    tally = Tally()
    channels: set[int] = set()  # The collectives counted in this computation, by channel.
    for inst in self.computations.get(name, []):
      if inst.opcode == "while":
        trips, known = self.trip_count(inst)
        tally.loops.append((trips, known))
        tally.add(self.walk(inst.called["body"][0]), trips)
      elif inst.opcode == "call":
        tally.add(self.walk(inst.called["to_apply"][0]))
      elif inst.opcode == "conditional":
        branches = [self.walk(n) for key, names in inst.called.items() for n in names]
        if branches:
          tally.add(max(branches, key=lambda branch: branch.estimated_cycles))
      else:
        self.count(inst, tally, channels)
    return tally

  def count(self, inst: Instruction, tally: Tally, channels: set[int]) -> None:
    """Adds one instruction that is not control flow."""
    if self.add_collective(inst, tally, channels):
      return
    if inst.opcode in _BOOKKEEPING or inst.opcode.endswith("-done"):
      return
    if inst.opcode.endswith("-start") and not inst.called:
      return  # The asynchronous start of a collective counted at its `-done`.
    for callee in inst.called.get("calls", ()):
      self.collectives_in(callee, tally, channels)
    if inst.estimated_cycles is None and _is_scalar(inst.shape):
      tally.scalar_ops += 1
      return
    tally.kernels += 1
    tally.fusions += inst.opcode == "fusion"
    if inst.estimated_cycles is None:
      tally.unestimated_kernels += 1
      kind = _FUSION_KIND.search(inst.text) if inst.opcode == "fusion" else None
      tally.unestimated[f"{inst.opcode} ({kind.group(1)})" if kind else inst.opcode] += 1
    else:
      tally.estimated_cycles += inst.estimated_cycles


@dataclasses.dataclass(frozen=True)
class KernelCost:
  """One kernel of a walk and what it costs per run: its estimated cycles times the times it
  runs (a while body's trip count)."""

  name: str
  kind: str
  shape: str
  body: str
  times: int
  estimated_cycles: int


def _body_summary(computations: dict[str, list[Instruction]], inst: Instruction, top: int) -> str:
  """The commonest opcodes of a fusion's computation, e.g. `xor×40 add×30 reduce×2`, which
  tell a random-bits kernel (xor, shifts) from a reduction or an update."""
  counts: collections.Counter = collections.Counter()
  for callee in inst.called.get("calls", ()):
    for sub in computations.get(callee, []):
      if sub.opcode not in _BOOKKEEPING:
        counts[sub.opcode] += 1
  return " ".join(f"{opcode}×{count}" for opcode, count in counts.most_common(top))


_CUSTOM_KIND = re.compile(r'"kind":"(__[^"]+)"|custom_call_target="([^"]+)"')


def kernel_kind(inst: Instruction) -> str:
  """An instruction's kind: its opcode, with a fusion's kind (`fusion (Loop)`) and what runs a
  custom fusion or call (`fusion (Custom: __triton_gemm)`, `custom-call (__cublas$gemm)`)."""
  fusion = _FUSION_KIND.search(inst.text) if inst.opcode == "fusion" else None
  custom = _CUSTOM_KIND.search(inst.text) if inst.opcode in ("fusion", "custom-call") else None
  target = (custom.group(1) or custom.group(2)) if custom else ""
  detail = ": ".join(part for part in (fusion.group(1) if fusion else "", target) if part)
  return f"{inst.opcode} ({detail})" if detail else inst.opcode


def kernel_costs(
  text: str, *, body_opcodes: int = 4, estimated_only: bool = True
) -> list[KernelCost]:
  """Every estimated kernel that one run of an optimised HLO module's text runs, per device,
  costliest first: the same walk and the same kernels as `hlo_stats` (a while body's kernels
  counted with its trip count), each with its kind (`kernel_kind`), result shape and the
  commonest opcodes of its fused computation. The costs sum to `hlo_stats(text).estimated_cycles`.

  With `estimated_only=False` it lists every instruction that the walk counts as a kernel or a
  scalar op, with or without an estimate (0 cycles without): on a GPU each runs as a kernel of
  its own, so their number, times trip counts, is `kernels + scalar_ops` of `hlo_stats`.
  """
  entry, computations = parse_module(text)
  walker = _Walker(computations)
  costs: list[KernelCost] = []

  def visit(name: str, times: int) -> None:
    for inst in computations.get(name, []):
      if inst.opcode == "while":
        visit(inst.called["body"][0], times * walker.trip_count(inst)[0])
      elif inst.opcode == "call":
        visit(inst.called["to_apply"][0], times)
      elif inst.opcode == "conditional":
        branches = [n for names in inst.called.values() for n in names]
        if branches:
          visit(max(branches, key=lambda n: walker.walk(n).estimated_cycles), times)
      elif _collective_kind(inst.opcode) is None:
        if estimated_only and inst.estimated_cycles is None:
          continue
        if inst.opcode in _BOOKKEEPING or inst.opcode.endswith("-done"):
          continue
        if inst.opcode.endswith("-start") and not inst.called:
          continue
        costs.append(
          KernelCost(
            name=inst.name,
            kind=kernel_kind(inst),
            shape=inst.shape,
            body=_body_summary(computations, inst, body_opcodes),
            times=times,
            estimated_cycles=(inst.estimated_cycles or 0) * times,
          )
        )

  visit(entry, 1)
  return sorted(costs, key=lambda cost: -cost.estimated_cycles)


def kernel_groups(costs: list[KernelCost]) -> list[dict[str, Any]]:
  """`kernel_costs` summed over kernels of the same kind, shape and fused opcodes (the same
  kernel for each of a model's layers), costliest first: what to compare between two
  programs, whose instruction names differ."""
  groups: dict[tuple[str, str, str], dict[str, Any]] = {}
  for cost in costs:
    group = groups.setdefault(
      (cost.kind, cost.shape, cost.body),
      {"kind": cost.kind, "shape": cost.shape, "body": cost.body, "count": 0, "cycles": 0},
    )
    group["count"] += cost.times
    group["cycles"] += cost.estimated_cycles
  return sorted(groups.values(), key=lambda group: -group["cycles"])


def hlo_stats(text: str) -> Tally:
  """The counts of an optimised HLO module's text, per device."""
  entry, computations = parse_module(text)
  return _Walker(computations).walk(entry)


@dataclasses.dataclass(frozen=True)
class Memory:
  """Per-device bytes of a compiled program (`compiled.memory_analysis()`)."""

  arguments: int
  outputs: int
  aliased: int
  temporaries: int
  code: int

  @property
  def total(self) -> int:
    return self.arguments + self.outputs - self.aliased + self.temporaries + self.code


@dataclasses.dataclass(frozen=True)
class ProgramStats:
  """Memory and counts of a compiled program, per device."""

  memory: Memory | None
  tally: Tally

  def estimated_seconds(self, clock_hz: float) -> float:
    """The compiler's estimated time of one run: its estimated cycles at `clock_hz`."""
    return self.tally.estimated_cycles / clock_hz


def memory(compiled: Any) -> Memory | None:
  """`compiled.memory_analysis()` as `Memory`, or None when the backend gives none."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return Memory(
    arguments=analysis.argument_size_in_bytes,
    outputs=analysis.output_size_in_bytes,
    aliased=analysis.alias_size_in_bytes,
    temporaries=analysis.temp_size_in_bytes,
    code=analysis.generated_code_size_in_bytes,
  )


def program_stats(compiled: Any) -> ProgramStats:
  """Memory and counts of `compiled` (a `jax.stages.Compiled`), per device."""
  return ProgramStats(memory(compiled), hlo_stats(compiled.as_text()))

r"""What would a train step cost on a TPU slice, plain against PATS, by the TPU compiler's estimate?

No TPU is used. Each case is the trainer's run (`configs/glue.py`, task RTE) compiled for a TPU
slice on this machine's CPU by libtpu, through the dry run of `train.py --compile_for`
(`pats_jax.training.dry_run`: `abstract_run`, `compile_run`, `train_step_mfu`). Per case it
compiles the train step of every variant and, for PATS variants, the PATS-statistics step,
and reads per chip: the compiler's estimated step time (its summed `estimated_cycles` at the
chip's clock), the model FLOPs utilisation that time implies (analytic FLOPs against the bf16
peak), kernels, scalar ops, collectives, memory and the compile time. Every time but the
compile time is the TPU compiler's estimate, not a measurement; it leaves out communication.

The trainer runs the PATS-statistics step after the train step on every step whose metrics it
logs and whose number is a multiple of `pats_stats_every_steps`, so a PATS variant is reported
three ways against plain: the train step alone, a step that also computes the statistics, and
the train step plus the statistics amortised over each interval of `--stats_every`.

  python -m scripts.bench.tpu_compile                    # BERT-base, v5e:2x2, 32 per chip
  python -m scripts.bench.tpu_compile --models bert-base-uncased --layers separate stacked \
      --per_chip_batch 32 128 --variants plain pats pats:pats.ema_dtype=bfloat16
  python -m scripts.bench.tpu_compile --num_layers 2     # the BERT-base shape with 2 layers

Cases: every combination of `--models`, `--slices`, `--layers` (separate, or stacked under
`nn.scan`: `model_config.scan_layers`) and `--per_chip_batch`. Variants: `plain`, `pats`, or
`<method>:<key>=<value>,...`, a method with config overrides (e.g.
`pats:pats.ema_dtype=bfloat16`, `plain:mesh.fsdp=4`); `--set key=value` applies to every
variant. Compute in `--dtype` (bfloat16 by default), parameters, AdamW moments and (unless
`pats.ema_dtype` says otherwise) PATS's EMAs in `--param_dtype` (float32), length `--length`.
`--markdown PATH` writes the table; `--json PATH` all figures, with the `--top_kernels`
costliest kernel groups of each step (`compiled_program.kernel_groups`: kind, result shape,
commonest fused opcodes, how many run, estimated microseconds), which show where a variant's
extra time goes. `--train_only` leaves out the PATS-statistics step (half the compile time).
"""

from __future__ import annotations

import ast
import itertools
import json
import pathlib
import tempfile
import time
from typing import Any

from pats_jax.models import known
from pats_jax.training import compiled_program, dry_run, sources, tpu_slices
from scripts.bench import common

MODELS = ("bert-base-uncased", "bert-large-uncased", "roberta-large")
LAYERS = ("separate", "stacked")
STEPS = ("train", "pats_stats")


def _value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def overrides(pairs: list[str]) -> dict[str, Any]:
  """`key=value` strings as a dict (values parsed as Python literals, else kept as text)."""
  result = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    if not sep:
      raise SystemExit(f"{pair!r}: expected key=value")
    result[key.strip()] = _value(value.strip())
  return result


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
  """`plain`, `pats` or `<method>:<key>=<value>,...` as the method and its overrides."""
  method, _, rest = spec.partition(":")
  return method, overrides([pair for pair in rest.split(",") if pair])


def set_field(config: Any, key: str, value: Any) -> None:
  """Sets the dotted field `key` of `config` (ml_collections) to `value`."""
  *parents, leaf = key.split(".")
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value


def run_config(
  model: str,
  variant: str,
  *,
  layers: str,
  batch_size: int,
  length: int,
  dtype: str,
  param_dtype: str,
  common_overrides: dict[str, Any],
) -> Any:
  """The trainer's config (`configs/glue.py`, RTE) of one variant of one case."""
  from configs import glue

  method, variant_overrides = parse_variant(variant)
  config = glue.get_config(f"task=rte,method={method}")
  config.model = model
  config.batch_size = batch_size
  config.eval_batch_size = batch_size
  config.data.max_length = length
  config.model_config.dtype = dtype
  config.model_config.param_dtype = param_dtype
  config.model_config.scan_layers = layers == "stacked"
  for key, value in {**common_overrides, **variant_overrides}.items():
    set_field(config, key, value)
  return config


def model_folder(model: str, num_layers: int, root: pathlib.Path) -> str:
  """`model`, or with `num_layers` > 0 a folder holding its config.json with that many layers
  (the dry run reads a local folder's config.json: a reduced model to iterate quickly)."""
  if num_layers <= 0:
    return model
  hf = known.known_config(sources.MODEL_HUB_IDS.get(model.lower(), model))
  if hf is None:
    raise SystemExit(f"--num_layers needs a known model; {model!r} is not one")
  folder = root / f"{model}-{num_layers}-layers"
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "config.json").write_text(json.dumps({**hf, "num_hidden_layers": num_layers}))
  return str(folder)


def top_kernels(compiled: Any, clock_hz: float, top: int) -> list[dict[str, Any]]:
  """The `top` costliest kernel groups of a compiled step (`compiled_program.kernel_groups`:
  kind, result shape, fused opcodes, how many run, their estimated microseconds)."""
  groups = compiled_program.kernel_groups(compiled_program.kernel_costs(compiled.as_text()))
  return [
    {
      **{k: v for k, v in group.items() if k != "cycles"},
      "estimated_us": group["cycles"] / clock_hz * 1e6,
    }
    for group in groups[:top]
  ]


def compile_variant(
  config: Any,
  slice_: tpu_slices.Slice,
  steps: tuple[str, ...] = STEPS,
  top: int = 0,
  gpu_program: bool = False,
) -> dict[str, Any]:
  """The figures of one variant: its train step and, with PATS, its statistics step (those of
  `steps`), with the `top` costliest kernel groups of each. `gpu_program`: the train step
  shaped for XLA:GPU (`steps.build_run_steps`), compiled for the TPU to compare."""
  run = dry_run.abstract_run(config, slice_, gpu_program=gpu_program)
  clock = slice_.generation.clock_hz
  row: dict[str, Any] = {}
  try:
    compiled = dry_run.compile_run(run, steps)
  except dry_run.OutOfMemoryError as error:
    return {"error": f"does not fit: {error}"}
  for name, step in compiled.items():
    tally, memory = step.stats.tally, step.stats.memory
    seconds = step.stats.estimated_seconds(clock)
    row[name] = {
      "estimated_ms": seconds * 1e3,
      "kernels": tally.kernels,
      "fusions": tally.fusions,
      "unestimated_kernels": tally.unestimated_kernels,
      "scalar_ops": tally.scalar_ops,
      "collectives": dict(tally.collectives),
      "collective_bytes": dict(tally.collective_bytes),
      "memory_bytes": memory.total if memory else None,
      "compile_s": step.seconds,
    }
    if top:
      row[name]["top_kernels"] = top_kernels(step.compiled, clock, top)
  row["train"]["estimated_mfu"] = dry_run.train_step_mfu(run, row["train"]["estimated_ms"] / 1e3)
  return row


def add_ratios(rows: dict[str, dict[str, Any]], stats_every: list[int]) -> None:
  """Per PATS variant: the step with statistics, amortised per interval, and ratios to plain."""
  plain = rows.get("plain", {}).get("train", {}).get("estimated_ms")
  for row in rows.values():
    if "train" not in row:
      continue
    train = row["train"]["estimated_ms"]
    stats = row.get("pats_stats", {}).get("estimated_ms", 0.0)
    row["per_logged_step_ms"] = train + stats
    row["amortised_ms"] = {str(n): train + stats / n for n in stats_every}
    if plain:
      row["train_over_plain"] = train / plain
      row["logged_over_plain"] = (train + stats) / plain
      row["amortised_over_plain"] = {n: v / plain for n, v in row["amortised_ms"].items()}


def markdown(cases: list[dict[str, Any]], stats_every: list[int], env: dict[str, Any]) -> str:
  """The figures as a markdown table, with what they are and how they were made."""
  every = " / ".join(str(n) for n in stats_every)
  lines = [
    "Every time below is the TPU compiler's estimate (its summed `estimated_cycles` at the "
    f"chip's clock), not a measurement, and leaves out communication. libtpu "
    f"{env['libtpu']}, jax {env['jax']}, {env['date']}; compiled on {env['cpu']} (compile "
    f"times only depend on it). Command: `{env['command']}`",
    "",
    "| model | slice (clock) | layers | per chip | variant | train step | ×plain | est. MFU | "
    f"stats step | train+stats ×plain | amortised every {every} ×plain | kernels | HBM GiB | "
    "compile s |",
    "|---" * 14 + "|",
  ]
  for case in cases:
    for variant, row in case["variants"].items():
      head = (
        f"| {case['model']} | {case['slice']} ({case['clock_ghz']:.2f} GHz) | {case['layers']} "
        f"| {case['per_chip_batch']} | {variant} |"
      )
      if "error" in row:
        lines.append(f"{head} {row['error']} |" + " |" * 8)
        continue
      train, stats = row["train"], row.get("pats_stats")
      ratio = lambda key, row=row: f"{row[key]:.3f}" if key in row else "–"
      amortised = " / ".join(f"{v:.3f}" for v in row.get("amortised_over_plain", {}).values())
      memory = max(s["memory_bytes"] or 0 for s in (train, stats) if s) / 2**30
      compile_s = " + ".join(f"{s['compile_s']:.0f}" for s in (train, stats) if s)
      stats_ms = f"{stats['estimated_ms']:.2f} ms" if stats else "–"
      kernels = f"{train['kernels']:,}" + (f" + {stats['kernels']:,}" if stats else "")
      lines.append(
        f"{head} {train['estimated_ms']:.2f} ms | {ratio('train_over_plain')} | "
        f"{train['estimated_mfu']:.1%} | {stats_ms} | "
        f"{ratio('logged_over_plain') if stats else '–'} | {amortised if stats else '–'} | "
        f"{kernels} | {memory:.2f} | {compile_s} |"
      )
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = common.parser(__doc__)
  parser.add_argument("--models", nargs="+", default=["bert-base-uncased"])
  parser.add_argument("--slices", nargs="+", default=["v5e:2x2"])
  parser.add_argument("--layers", nargs="+", choices=LAYERS, default=["separate"])
  parser.add_argument("--per_chip_batch", type=int, nargs="+", default=[32])
  parser.add_argument("--variants", nargs="+", default=["plain", "pats"])
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument(
    "--dtype", choices=["float32", "bfloat16"], default="bfloat16", help="compute dtype"
  )
  parser.add_argument(
    "--param_dtype", choices=["float32", "bfloat16"], default="float32", help="parameter dtype"
  )
  parser.add_argument(
    "--num_layers", type=int, default=0, help="override the models' layer count (0: theirs)"
  )
  parser.add_argument(
    "--stats_every", type=int, nargs="+", default=[1, 10, 100], help="statistics intervals"
  )
  parser.add_argument(
    "--train_only", action="store_true", help="leave out the PATS-statistics step"
  )
  parser.add_argument(
    "--top_kernels", type=int, default=20, help="costliest kernel groups per step in --json"
  )
  parser.add_argument(
    "--gpu_program",
    action="store_true",
    help="compile the train step shaped for GPUs (grouped norms and non-finite test)",
  )
  parser.add_argument("--set", nargs="*", default=[], help="key=value for every variant")
  parser.add_argument("--markdown", default="", help="also write the table to this file")
  args = parser.parse_args()
  common_overrides = overrides(args.set)
  for spec in args.variants:
    method, _ = parse_variant(spec)
    if method not in ("plain", "pats", "uniform", "inverse", "noisytune", "sage", "add_noise"):
      raise SystemExit(f"variant {spec!r}: unknown method {method!r}")
  dry_run.prepare_host()
  slices = [tpu_slices.parse_slice(name) for name in args.slices]
  report = common.Report(
    "TPU compiler's estimated step time, plain against PATS (no TPU used: estimates)"
  )
  env = {**report.figures["environment"], "libtpu": tpu_slices.libtpu_version()}
  print(f"# libtpu: {env['libtpu']}")
  report.add("libtpu", env["libtpu"])
  report.add("estimate", "TPU compiler's estimated cycles at the chip's clock; not measured")
  report.add("stats_every", args.stats_every)
  report.add("gpu_program", args.gpu_program)
  cases: list[dict[str, Any]] = []

  def write_partial(done: list[dict[str, Any]]) -> str:
    """Writes the figures of the cases `done` so far (`--json`, `--markdown`); the table."""
    report.add("cases", done)
    table = markdown(done, args.stats_every, env)
    if args.markdown:
      pathlib.Path(args.markdown).write_text(table)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(report.figures, indent=1, default=str) + "\n")
    return table

  with tempfile.TemporaryDirectory() as tmp:
    grid = itertools.product(args.models, slices, args.layers, args.per_chip_batch)
    for model, slice_, layers, per_chip in grid:
      case = {
        "model": model + (f" ({args.num_layers} layers)" if args.num_layers > 0 else ""),
        "slice": slice_.name,
        "topology": slice_.topology,
        "chips": slice_.chips,
        "clock_ghz": slice_.generation.clock_hz / 1e9,
        "layers": layers,
        "per_chip_batch": per_chip,
        "length": args.length,
        "dtype": args.dtype,
        "param_dtype": args.param_dtype,
        "variants": {},
      }
      folder = model_folder(model, args.num_layers, pathlib.Path(tmp))
      for variant in args.variants:
        config = run_config(
          folder,
          variant,
          layers=layers,
          batch_size=per_chip * slice_.chips,
          length=args.length,
          dtype=args.dtype,
          param_dtype=args.param_dtype,
          common_overrides=common_overrides,
        )
        start = time.perf_counter()
        case["variants"][variant] = compile_variant(
          config,
          slice_,
          ("train",) if args.train_only else STEPS,
          args.top_kernels,
          args.gpu_program,
        )
        print(
          f"# compiled {case['model']} {slice_.name} {layers} {per_chip}/chip {variant} in "
          f"{time.perf_counter() - start:.0f} s",
          flush=True,
        )
        add_ratios(case["variants"], args.stats_every)
        write_partial([*cases, case])  # What is done survives a run stopped early.
      cases.append(case)
  table = write_partial(cases)
  print(table)
  report.finish(args.json)


if __name__ == "__main__":
  main()

r"""How many kernels does a train step launch on a GPU, by the CUDA compiler, without a GPU?

No GPU is used. Each case is the trainer's run (`configs/glue.py`, task RTE) built as the dry run
builds it (`pats_jax.training.dry_run.abstract_run`: shapes, no weights) on a compile-only
device of an NVIDIA card (`pats_jax.training.gpu_targets`: H100 or H200 SXM, from the jax CUDA
plugin), and its train step compiled by XLA's GPU pipeline on this machine's CPU. Autotuning
needs a GPU and is skipped, so GEMMs take the compiler's default (Triton GEMM fusions on
Hopper). Nothing is timed but the compile: the figures are counts in the compiled program.

Per step it reports:
- kernels: every instruction of the optimised HLO that runs on the GPU (fusions, GEMMs,
  custom calls such as cuDNN attention, copies; not the bookkeeping ones: parameters, tuples,
  bitcasts, constants), a `while` body's counted its trip count times (`compiled_program`,
  with `kernels + scalar_ops`: on a GPU a scalar fusion is a kernel too); by kind: GEMM, cuDNN,
  reduction fusions (`kInput`), elementwise fusions (`kLoop`), other Triton fusions, copies;
- by phase: the model's forward, its backward, and the rest (the optimizer update, the
  norms, the random bits), by the JAX op name each kernel carries;
- launches: what the host launches per step, from XLA's thunk sequence (`gpu_thunks`):
  command buffers (CUDA graphs, each holding many kernels) and the kernels launched outside
  them (a loop's condition, each iteration), and how many kernels run inside graphs.

  python -m scripts.bench.gpu_compile                          # BERT-base, H100, batch 32
  python -m scripts.bench.gpu_compile --num_layers 2           # the same shape, 2 layers
  python -m scripts.bench.gpu_compile --set model_config.attention=cudnn \
      model_config.attention_dropout=0.0   # cuDNN attention: training without its dropout
  python -m scripts.bench.gpu_compile --xla xla_gpu_enable_command_buffer=FUSION,CUBLAS

Cases: every combination of `--gpus`, `--models`, `--layers` (separate, or stacked under
`nn.scan`) and `--batch_size`; variants as in `scripts.bench.tpu_compile` (`plain`, `pats`,
`<method>:<key>=<value>,...`), `--set key=value` for every variant, `--xla key=value` XLA
options for every compile. The trainer shapes two parts of the step for a GPU
(`steps.build_run_steps`' `gpu_program`: the parameter norm after the update, the non-finite
test and logged norms grouped); `--tpu_step` compiles the step it builds for a TPU instead.
`--markdown PATH` writes the table, `--json PATH` every figure with the `--top_kernels`
commonest kernel groups of each step. It needs the jax CUDA plugin
(`pip install "jax[cuda12]==<jax version>"`, best in a separate virtual environment); without
it, it stops with one message saying so (exit status 2).
"""

from __future__ import annotations

import collections
import itertools
import pathlib
import re
import sys
import tempfile
import time
from typing import Any

from pats_jax.training import compiled_program, dry_run, gpu_targets, gpu_thunks
from scripts.bench import common, tpu_compile

# Kernel kinds (`compiled_program.kernel_kind`) by what runs them.
_GEMM_TARGETS = ("__triton_gemm", "__triton_nested_gemm_fusion", "__cublas")


def category(kind: str) -> str:
  """The category of a kernel kind: GEMM, cuDNN, reduction, elementwise, Triton, copy, other."""
  if any(target in kind for target in _GEMM_TARGETS):
    return "GEMM"
  if "__cudnn" in kind:
    return "cuDNN"
  if "__triton" in kind:
    return "Triton"
  return {
    "fusion (Input)": "reduction",
    "fusion (Loop)": "elementwise",
    "copy": "copy",
  }.get(kind, "other")


CATEGORIES = ("GEMM", "cuDNN", "reduction", "elementwise", "Triton", "copy", "other")


_OP_NAME = re.compile(r'op_name="([^"]*)"')
PHASES = ("forward", "backward", "rest")


def phase(text: str) -> str:
  """The part of a train step an instruction belongs to, by the JAX op name in its metadata:
  the model's forward (`jvp(`), its backward (`transpose(`), or the rest (the update, the
  norms, the random bits; also instructions without an op name)."""
  op_name = _OP_NAME.search(text)
  name = op_name.group(1) if op_name else ""
  return "backward" if "transpose(" in name else "forward" if "jvp(" in name else "rest"


def kernel_counts(hlo: str, top: int) -> dict[str, Any]:
  """Kernels per run of an optimised GPU program (the module docstring), by category, by phase
  of the step (`phase`), and the `top` commonest groups (kind, result shape, fused opcodes)."""
  costs = compiled_program.kernel_costs(hlo, estimated_only=False)
  _, computations = compiled_program.parse_module(hlo)
  texts = {inst.name: inst.text for insts in computations.values() for inst in insts}
  by_category: collections.Counter = collections.Counter()
  by_phase: collections.Counter = collections.Counter()
  for cost in costs:
    by_category[category(cost.kind)] += cost.times
    by_phase[phase(texts[cost.name])] += cost.times
  groups = sorted(compiled_program.kernel_groups(costs), key=lambda g: -g["count"])
  return {
    "kernels": sum(by_category.values()),
    "by_category": {name: by_category[name] for name in CATEGORIES},
    "by_phase": {name: by_phase[name] for name in PHASES},
    "top_kernels": [{k: v for k, v in g.items() if k != "cycles"} for g in groups[:top]],
  }


def compile_variant(
  config: Any, devices: list[Any], options: dict[str, Any], top: int, *, tpu_step: bool = False
) -> dict[str, Any]:
  """The counts of the train step of one variant, compiled with the XLA `options` (with
  `tpu_step`, the step the trainer builds for a TPU: `steps.build_run_steps`' `gpu_program`)."""
  run = dry_run.abstract_run(config, None, devices, gpu_program=False if tpu_step else None)
  jitted, args = run.step_args("train")
  with tempfile.TemporaryDirectory() as dump:
    step = dry_run.compile_step(
      "train", jitted, *args, compiler_options={**options, "xla_dump_to": dump}
    )
    sequence, metadata = gpu_thunks.read_dump(pathlib.Path(dump))
  hlo = step.compiled.as_text()
  tally = step.stats.tally
  row = kernel_counts(hlo, top)
  if row["kernels"] != tally.kernels + tally.scalar_ops:  # One walk, two readings.
    raise AssertionError(f"{row['kernels']} kernels by kind, {tally.kernels} + scalar ops")
  launches = gpu_thunks.launches(sequence, metadata, hlo)
  memory = step.stats.memory
  row.update(
    launches=launches.total,
    graphs=launches.graphs,
    ungraphed=launches.ungraphed,
    in_graphs=launches.in_graphs,
    ungraphed_kinds=dict(launches.ungraphed_kinds),
    loops=tally.loops,
    memory_bytes=memory.total if memory else None,
    compile_s=step.seconds,
  )
  return row


def markdown(cases: list[dict[str, Any]], env: dict[str, Any]) -> str:
  """The figures as a markdown table, with what they are and how they were made."""
  lines = [
    "Counts in the compiled program (no GPU used, nothing timed but the compile): kernels "
    "per train step, a loop body's times its trip count; launches: CUDA graphs + kernels "
    f"outside them. {env['plugin']}, jax {env['jax']}, cuDNN {env['cudnn']}, {env['date']}. "
    f"Command: `{env['command']}`",
    "",
    "| GPU | model | layers | batch | variant | kernels | "
    + " | ".join(CATEGORIES)
    + " | forward / backward / rest | launches (graphs + outside) | kernels in graphs | "
    "compile s |",
    "|---" * (10 + len(CATEGORIES)) + "|",
  ]
  for case in cases:
    for variant, row in case["variants"].items():
      head = (
        f"| {case['gpu']} | {case['model']} | {case['layers']} | {case['batch_size']} | {variant} |"
      )
      if "error" in row:
        lines.append(f"{head} {row['error']} |" + " |" * (4 + len(CATEGORIES)))
        continue
      kinds = " | ".join(f"{row['by_category'][name]:,}" for name in CATEGORIES)
      phases = " / ".join(f"{row['by_phase'][name]:,}" for name in PHASES)
      lines.append(
        f"{head} {row['kernels']:,} | {kinds} | {phases} | {row['launches']:,} "
        f"({row['graphs']:,} + {row['ungraphed']:,}) | {row['in_graphs']:,} | "
        f"{row['compile_s']:.0f} |"
      )
  return "\n".join(lines) + "\n"


def main() -> None:
  parser = common.parser(__doc__)
  parser.add_argument("--gpus", nargs="+", default=["h100"], help=f"of {sorted(gpu_targets.CARDS)}")
  parser.add_argument("--models", nargs="+", default=["bert-base-uncased"])
  parser.add_argument("--layers", nargs="+", choices=tpu_compile.LAYERS, default=["separate"])
  parser.add_argument("--batch_size", type=int, nargs="+", default=[32])
  parser.add_argument("--variants", nargs="+", default=["plain", "pats"])
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
  parser.add_argument("--param_dtype", choices=["float32", "bfloat16"], default="float32")
  parser.add_argument(
    "--num_layers", type=int, default=0, help="override the models' layer count (0: theirs)"
  )
  parser.add_argument("--set", nargs="*", default=[], help="key=value for every variant")
  parser.add_argument("--xla", nargs="*", default=[], help="XLA option=value for every compile")
  parser.add_argument(
    "--tpu_step",
    action="store_true",
    help="the train step the trainer builds for a TPU (per-leaf norms fused with the update)",
  )
  parser.add_argument("--top_kernels", type=int, default=15, help="kernel groups per step")
  parser.add_argument("--markdown", default="", help="also write the table to this file")
  args = parser.parse_args()
  try:
    cards = [gpu_targets.parse_card(name) for name in args.gpus]
    dry_run.prepare_host()
    devices = {card.name: gpu_targets.target_devices(card) for card in cards}
  except (gpu_targets.GpuNameError, gpu_targets.CudaPluginError) as error:
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2) from None
  common_overrides = tpu_compile.overrides(args.set)
  options = tpu_compile.overrides(args.xla)
  report = common.Report("Kernels per train step on a GPU, by the CUDA compiler (no GPU used)")
  env = {
    **report.figures["environment"],
    "plugin": gpu_targets.plugin_version(),
    "cudnn": ".".join(map(str, gpu_targets.cudnn_version())),
  }
  report.add("plugin", env["plugin"])
  report.add("xla_options", options)
  report.add("target_configs", {card.name: card.target_config() for card in cards})
  cases: list[dict[str, Any]] = []
  with tempfile.TemporaryDirectory() as tmp:
    grid = itertools.product(cards, args.models, args.layers, args.batch_size)
    for card, model, layers, batch in grid:
      case = {
        "gpu": card.device_name,
        "model": model + (f" ({args.num_layers} layers)" if args.num_layers > 0 else ""),
        "layers": layers,
        "batch_size": batch,
        "length": args.length,
        "variants": {},
      }
      folder = tpu_compile.model_folder(model, args.num_layers, pathlib.Path(tmp))
      for variant in args.variants:
        config = tpu_compile.run_config(
          folder,
          variant,
          layers=layers,
          batch_size=batch,
          length=args.length,
          dtype=args.dtype,
          param_dtype=args.param_dtype,
          common_overrides=common_overrides,
        )
        start = time.perf_counter()
        try:
          row = compile_variant(
            config, devices[card.name], options, args.top_kernels, tpu_step=args.tpu_step
          )
        except dry_run.DryRunError as error:
          row = {"error": str(error)}
        case["variants"][variant] = row
        print(
          f"# compiled {case['model']} {card.name} {layers} {batch} {variant} in "
          f"{time.perf_counter() - start:.0f} s: {row.get('kernels', '-')} kernels",
          flush=True,
        )
      cases.append(case)
      report.add("cases", cases)
  table = markdown(cases, env)
  print(table)
  if args.markdown:
    pathlib.Path(args.markdown).write_text(table)
  report.finish(args.json)


if __name__ == "__main__":
  main()

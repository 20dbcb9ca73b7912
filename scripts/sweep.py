r"""Runs a grid of fine-tuning runs (methods x tasks x seeds x noise scales), one process each.

  python scripts/sweep.py --sweep configs/sweeps/glue_small.py --root workdirs/glue_small
  python scripts/sweep.py --sweep configs/sweeps/tiny.py --root /tmp/tiny_sweep --dry_run

Each run is `python train.py --config <sweep.config>:task=..,method=..,model=..,seed=..
--workdir <root>/<task>/<method>[_ns<scale>][_<variant>]/seed<seed>
[--config.pats.noise_scale=..] [--config.<override>=..]`, its output in the workdir's
`train.log`. `sweep.variants` (optional) names sets of overrides (e.g. `noemb:
{pats.noise_on_embeddings: False}`) that the PATS-noise methods also run with, besides the
base; such a run sets `config.tag` to the variant's name, so tables give it its own row.
A run whose workdir holds results.json is skipped; an interrupted one resumes from its
checkpoint, so the sweep can be stopped and started again at will.

With `sweep.sensitivity = True`, a finished run's dev-set sensitivity is measured at once
(`scripts/sensitivity.py`, into the workdir's `sensitivity.json`), before its checkpoints go.
With `--archive DIR`, a finished run's small files (`ARCHIVED`) are copied to `DIR/<run>/`,
and a run found there counts as finished: commit the archive, and a study survives the loss
of its workdirs (`scripts/aggregate.py` and `scripts/sensitivity.py` read it like a root).
Child runs share a persistent XLA compilation cache (`--compilation_cache`): every run of
a grid compiles the same shapes. `--jobs N` runs N at a time (after a first run alone, which
fills that cache): for a small model on one GPU, whose steps leave it mostly idle (each child
then allocates GPU memory as it goes, `XLA_PYTHON_CLIENT_PREALLOCATE=false`, instead of
taking 75% of it at start).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from pats_jax.training import optimizers

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # Sweep files import `configs.*`, as train.py's configs do.

_SWEEP = config_flags.DEFINE_config_file(
  "sweep", None, "Sweep config file (configs/sweeps/*.py).", lock_config=True
)
_ROOT = flags.DEFINE_string("root", "workdirs/sweep", "Folder holding one workdir per run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands of the pending runs only.")
_ARCHIVE = flags.DEFINE_string(
  "archive", "", "Folder that keeps each finished run's small files (e.g. results/runs/<name>)."
)
_CACHE = flags.DEFINE_string(
  "compilation_cache",
  "<root>/.xla_cache",
  "JAX persistent compilation cache of the child runs; empty: none. An inherited "
  "JAX_COMPILATION_CACHE_DIR wins.",
)

_SET = flags.DEFINE_multi_string(
  "set",
  [],
  "A train.py config override for every run, KEY=VALUE without `--config.` (repeatable), "
  "e.g. --set data.bucket_multiple=128 (one padded shape: fewer compilations on a GPU).",
)
_JOBS = flags.DEFINE_integer(
  "jobs", 1, "Runs at a time (e.g. 8 for a small model on one GPU; 1 on a CPU)."
)

ARCHIVED = ("config.json", "results.json", "metrics.jsonl", "sensitivity.json")


@dataclasses.dataclass(frozen=True)
class Run:
  """One run of the grid."""

  task: str
  method: str
  seed: int
  noise_scale: float | None
  variant: str | None = None

  @property
  def name(self) -> str:
    """`<task>/<method>[_ns<scale>][_<variant>]/seed<seed>`, the run's workdir below the root."""
    method = self.method if self.noise_scale is None else f"{self.method}_ns{self.noise_scale:g}"
    method += "" if self.variant is None else f"_{self.variant}"
    return f"{self.task}/{method}/seed{self.seed}"


def grid(sweep: Any) -> Iterator[Run]:
  """The runs of a sweep; noise scales multiply only the methods with PATS noise.

  Order: task, method, noise scale, variant (the base first), seed (innermost); with
  `sweep.seed_major = True` the seed is outermost instead, so a sweep stopped early has every
  cell at the same depth (the first seeds of every task and method) and paired differences
  for all of them. With `sweep.method_major = True` the method goes outside even that: each
  method's runs (in the order of `sweep.methods`) finish before the next method starts, so a
  sweep stopped early has the first methods complete, e.g. the one control a pre-registered
  comparison needs. `sweep.variants` multiply the PATS-noise methods only, like noise scales.
  """
  seeds = [int(seed) for seed in sweep.seeds]
  variants = [None, *sweep.get("variants", {}).keys()]
  method_groups = (
    [[method] for method in sweep.methods] if sweep.get("method_major") else [list(sweep.methods)]
  )
  for method_group in method_groups:
    for seed_group in [[seed] for seed in seeds] if sweep.get("seed_major") else [seeds]:
      for task in sweep.tasks:
        for method in method_group:
          noisy = method in optimizers.PATS_VARIANTS and sweep.noise_scales
          for scale in [float(scale) for scale in sweep.noise_scales] if noisy else [None]:
            for variant in variants if noisy else [None]:
              for seed in seed_group:
                yield Run(task, method, seed, scale, variant)


def _flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
  for key, value in tree.items():
    if hasattr(value, "items"):
      yield from _flatten(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def command(sweep: Any, run: Run, workdir: pathlib.Path, extra: Sequence[str] = ()) -> list[str]:
  """The `python train.py ...` command line of one run; `extra`: `KEY=VALUE` overrides last."""
  config = (
    str(REPO_ROOT / sweep.config)
    if not pathlib.Path(sweep.config).is_absolute()
    else (sweep.config)
  )
  args = [
    sys.executable,
    str(REPO_ROOT / "train.py"),
    f"--config={config}:task={run.task},method={run.method},model={sweep.model},seed={run.seed}",
    f"--workdir={workdir}",
  ]
  if run.noise_scale is not None:
    args.append(f"--config.pats.noise_scale={run.noise_scale}")
  args += [f"--config.{key}={value}" for key, value in _flatten(sweep.overrides)]
  if run.variant is not None:
    args += [f"--config.{key}={value}" for key, value in _flatten(sweep.variants[run.variant])]
    args.append(f"--config.tag={run.variant}")
  return args + [f"--config.{key}={value}" for key, value in parse_overrides(extra)]


def parse_overrides(extra: Sequence[str]) -> list[tuple[str, str]]:
  """`KEY=VALUE` strings (`--set`) as (key, value) pairs.

  Raises:
    ValueError: one lacks `=` or its key (train.py checks the key itself: configs are locked).
  """
  pairs = []
  for override in extra:
    key, sep, value = override.partition("=")
    if not sep or not key or key.startswith("-"):
      raise ValueError(f"--set takes KEY=VALUE (e.g. data.bucket_multiple=128), got {override!r}")
    pairs.append((key, value))
  return pairs


def child_env(cache_dir: str, *, jobs: int = 1) -> dict[str, str]:
  """The child runs' environment: ours, plus the persistent compilation cache if asked for.

  With several runs at a time, each allocates accelerator memory on demand rather than
  preallocating most of it (an inherited `XLA_PYTHON_CLIENT_PREALLOCATE` wins).
  """
  env = dict(os.environ)
  if cache_dir and "JAX_COMPILATION_CACHE_DIR" not in env:
    env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
  if jobs > 1:
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  return env


def finish(sweep: Any, workdir: pathlib.Path, archive: pathlib.Path | None, env: dict) -> bool:
  """After-run steps of a finished run, each skipped if already done; False if one failed.

  Measures the dev sensitivity (`sweep.sensitivity`) while `best/` exists, prunes
  `checkpoints/` (`sweep.prune_checkpoints`), then copies `ARCHIVED` to `archive`.
  """
  if sweep.get("sensitivity", False) and not (workdir / "sensitivity.json").exists():
    args = [sys.executable, str(REPO_ROOT / "scripts/sensitivity.py"), f"--workdirs={workdir}"]
    with open(workdir / "train.log", "a") as log:
      code = subprocess.call(
        [*args, "--out="], stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
      )
    if code != 0:
      print(f"[sweep] sensitivity of {workdir} failed; see its train.log", flush=True)
      return False
  if sweep.get("prune_checkpoints", False):
    # A finished run is never resumed; its best/ checkpoint stays for the analysis.
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
  if archive is not None:
    archive.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVED:
      if (workdir / name).exists():
        shutil.copy2(workdir / name, archive / name)
  return True


def run_sweep(
  sweep: Any,
  root: pathlib.Path,
  *,
  dry_run: bool = False,
  archive: pathlib.Path | None = None,
  cache_dir: str = "",
  jobs: int = 1,
  extra: Sequence[str] = (),
) -> dict[str, list[str]]:
  """Runs the pending runs of `sweep`, `jobs` at a time, in grid order.

  Args:
    sweep: the sweep config (`config`, `model`, `methods`, `tasks`, `seeds`, `noise_scales`,
      `overrides`, and optionally `prune_checkpoints`: delete a finished run's `checkpoints/`,
      keeping `best/`, so a large grid fits on disk; `sensitivity`: measure a finished run's
      dev sensitivity; `seed_major`, `method_major`: see `grid`).
    root: the folder of the runs' workdirs.
    dry_run: print the commands instead of running them.
    archive: folder that receives each finished run's `ARCHIVED` files under its name; a
      run archived there is finished.
    cache_dir: the child runs' persistent compilation cache ("" for none).
    jobs: how many runs go at a time (each its own process).
    extra: `KEY=VALUE` config overrides added to every run's command (`--set`).

  Returns:
    Run names by outcome: "skipped" (results.json in the workdir or the archive), "done",
    "failed", "pending" (dry run).

  Raises:
    ValueError: `jobs` < 1.
  """
  if jobs < 1:
    raise ValueError(f"--jobs must be at least 1, got {jobs}")
  parse_overrides(extra)  # Bad input fails before any run starts.
  outcome: dict[str, list[str]] = {"skipped": [], "done": [], "failed": [], "pending": []}
  env = child_env(cache_dir, jobs=jobs)
  todo = []
  for run in grid(sweep):
    workdir = root / run.name
    archived = None if archive is None else archive / run.name
    if archived is not None and (archived / "results.json").exists():
      outcome["skipped"].append(run.name)
      continue
    if (workdir / "results.json").exists():
      # Finished earlier; the after-run steps may not have been (a sweep stopped between).
      done = dry_run or finish(sweep, workdir, archived, env)
      outcome["skipped" if done else "failed"].append(run.name)
      continue
    if dry_run:
      print(" ".join(command(sweep, run, workdir, extra)))
      outcome["pending"].append(run.name)
      continue
    todo.append((run, workdir, archived))

  def execute(run: Run, workdir: pathlib.Path, archived: pathlib.Path | None) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"[sweep] {run.name}", flush=True)
    with open(workdir / "train.log", "a") as log:
      code = subprocess.call(
        command(sweep, run, workdir, extra),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=env,
      )
    if code == 0 and (workdir / "results.json").exists():
      return "done" if finish(sweep, workdir, archived, env) else "failed"
    print(f"[sweep] {run.name} failed (exit {code}); see {workdir / 'train.log'}", flush=True)
    return "failed"

  # With several at a time, the first run goes alone: it fills the compilation cache, which
  # the others then read instead of all compiling the same shapes at once.
  first = todo[:1] if jobs > 1 else []
  rest = todo[len(first) :]
  for run, workdir, archived in first:
    outcome[execute(run, workdir, archived)].append(run.name)
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = [pool.submit(execute, *item) for item in rest]
    for (run, _, _), future in zip(rest, futures, strict=True):
      outcome[future.result()].append(run.name)
  return outcome


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _SWEEP.value is None:
    raise app.UsageError("--sweep is required, e.g. --sweep configs/sweeps/glue_small.py")
  root = pathlib.Path(_ROOT.value).absolute()
  outcome = run_sweep(
    _SWEEP.value,
    root,
    dry_run=_DRY_RUN.value,
    archive=pathlib.Path(_ARCHIVE.value).absolute() if _ARCHIVE.value else None,
    cache_dir=_CACHE.value.replace("<root>", str(root)),
    jobs=_JOBS.value,
    extra=_SET.value,
  )
  print("[sweep] " + ", ".join(f"{key}: {len(names)}" for key, names in outcome.items()))
  if outcome["failed"]:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)

r"""Runs a grid of fine-tuning runs (methods x tasks x seeds x noise scales), one process each.

  python -m scripts.study.sweep --sweep configs/sweeps/glue_small.py --root workdirs/glue_small \
      --archive workdirs/glue_small/runs.jsonl
  python -m scripts.study.sweep --sweep configs/sweeps/tiny.py --root workdirs/tiny --dry_run

Run from the repository root. Each run is `python train.py --config
<sweep.config>:task=..,method=..,model=..,seed=.. --workdir <root>/<run>
[--config.pats.noise_scale=..] [--config.<override>=..]`, where `<run>` is
`<task>/<method>[_ns<scale>][_<variant>]/seed<seed>`; its output goes to the workdir's
`train.log`. `sweep.variants` (optional) names sets of overrides (e.g. `noemb:
{pats.noise_on_embeddings: False}`) that the PATS-noise methods also run with, besides the
base; such a run sets `config.tag` to the variant's name, so tables give it its own row.
A run whose workdir holds results.json is finished; an interrupted one resumes from its
checkpoint, so the sweep can be stopped and started again at will.

With `sweep.sensitivity = True`, a finished run's dev-set sensitivity is measured at once
(`scripts.study.sensitivity`, into the workdir's `sensitivity.json`), before its checkpoints
go. With `--archive FILE.jsonl`, each finished run is appended to that packed archive
(`scripts.study.archive`: config, results, logged metrics and sensitivity, no machine paths),
and a run found there counts as finished: commit the archive, and a study survives the loss
of its workdirs (the study's tools read archives and roots alike).
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
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from pats_jax.training import optimizers
from scripts.study import archive as archive_lib

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

_SWEEP = config_flags.DEFINE_config_file(
  "sweep", None, "Sweep config file (configs/sweeps/*.py, configs/study/*.py).", lock_config=True
)
_ROOT = flags.DEFINE_string("root", "workdirs/sweep", "Folder holding one workdir per run.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands of the pending runs only.")
_ARCHIVE = flags.DEFINE_string(
  "archive", "", "Packed archive (a .jsonl file) that each finished run is appended to."
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


class Archive:
  """A packed archive (`scripts.study.archive`) that several runner threads append to.

  Raises:
    ValueError: `path` is not a `.jsonl` file name.
  """

  def __init__(self, path: pathlib.Path):
    if path.suffix != archive_lib.SUFFIX:
      raise ValueError(f"--archive takes a {archive_lib.SUFFIX} file, got {str(path)!r}")
    self.path = path
    self.names = archive_lib.finished(path)
    self._lock = threading.Lock()

  def add(self, workdir: pathlib.Path, name: str) -> None:
    """Appends the finished run in `workdir` under `name`, unless it is there already."""
    with self._lock:
      if name not in self.names:
        archive_lib.append(self.path, archive_lib.pack(workdir, name))
        self.names.add(name)


def finish(
  sweep: Any, workdir: pathlib.Path, name: str, archive: Archive | None, env: dict
) -> bool:
  """After-run steps of a finished run, each skipped if already done; False if one failed.

  Measures the dev sensitivity (`sweep.sensitivity`) while `best/` exists, prunes
  `checkpoints/` (`sweep.prune_checkpoints`), then appends the run to `archive` as `name`.
  """
  if sweep.get("sensitivity", False) and not (workdir / "sensitivity.json").exists():
    args = [sys.executable, "-m", "scripts.study.sensitivity", f"--runs={workdir}", "--out="]
    with open(workdir / "train.log", "a") as log:
      code = subprocess.call(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env)
    if code != 0:
      print(f"[sweep] sensitivity of {workdir} failed; see its train.log", flush=True)
      return False
  if sweep.get("prune_checkpoints", False):
    # A finished run is never resumed; its best/ checkpoint stays for the analysis.
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
  if archive is not None:
    archive.add(workdir, name)
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
    archive: packed archive (`.jsonl`) that each finished run is appended to; a run found
      there is finished.
    cache_dir: the child runs' persistent compilation cache ("" for none).
    jobs: how many runs go at a time (each its own process).
    extra: `KEY=VALUE` config overrides added to every run's command (`--set`).

  Returns:
    Run names by outcome: "skipped" (results.json in the workdir, or in the archive),
    "done", "failed", "pending" (dry run).

  Raises:
    ValueError: `jobs` < 1, a bad `extra`, or an archive that is not a `.jsonl` file.
  """
  if jobs < 1:
    raise ValueError(f"--jobs must be at least 1, got {jobs}")
  parse_overrides(extra)  # Bad input fails before any run starts.
  packed = None if archive is None else Archive(archive)
  outcome: dict[str, list[str]] = {"skipped": [], "done": [], "failed": [], "pending": []}
  env = child_env(cache_dir, jobs=jobs)
  todo = []
  for run in grid(sweep):
    workdir = root / run.name
    if packed is not None and run.name in packed.names:
      outcome["skipped"].append(run.name)
      continue
    if (workdir / "results.json").exists():
      # Finished earlier; the after-run steps may not have been (a sweep stopped between).
      done = dry_run or finish(sweep, workdir, run.name, packed, env)
      outcome["skipped" if done else "failed"].append(run.name)
      continue
    if dry_run:
      print(" ".join(command(sweep, run, workdir, extra)))
      outcome["pending"].append(run.name)
      continue
    todo.append((run, workdir))

  def execute(run: Run, workdir: pathlib.Path) -> str:
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
      return "done" if finish(sweep, workdir, run.name, packed, env) else "failed"
    print(f"[sweep] {run.name} failed (exit {code}); see {workdir / 'train.log'}", flush=True)
    return "failed"

  # With several at a time, the first run goes alone: it fills the compilation cache, which
  # the others then read instead of all compiling the same shapes at once.
  first = todo[:1] if jobs > 1 else []
  rest = todo[len(first) :]
  for run, workdir in first:
    outcome[execute(run, workdir)].append(run.name)
  with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
    futures = [pool.submit(execute, *item) for item in rest]
    for (run, _), future in zip(rest, futures, strict=True):
      outcome[future.result()].append(run.name)
  return outcome


def parse_flags(argv: list[str]) -> list[str]:
  """`FLAGS(argv)`; a mistake in the sweep file or a flag exits with one message (status 2).

  A sweep file's own error (e.g. a study sweep given no noise scale) keeps its last line,
  the error's message, instead of the traceback `config_flags` wraps it in.
  """
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as error:
    message = str(error).strip()
    if isinstance(error, KeyError | AttributeError):  # An override of a field the file lacks.
      field = message.splitlines()[0].strip("'\"")
      given = [arg for arg in argv if arg.startswith("--sweep.") and field in arg]
      message = f"{' '.join(given) or field}: the sweep config has no field {field!r}"
    if "Traceback (most recent call last)" in message:
      head = message.split("Traceback (most recent call last)")[0].strip().rstrip(":")
      message = f"{head}: {message.splitlines()[-1].strip()}"
    print(f"sweep: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _SWEEP.value is None:
    raise app.UsageError("--sweep is required, e.g. --sweep configs/sweeps/glue_small.py")
  root = pathlib.Path(_ROOT.value).absolute()
  try:
    outcome = run_sweep(
      _SWEEP.value,
      root,
      dry_run=_DRY_RUN.value,
      archive=pathlib.Path(_ARCHIVE.value).absolute() if _ARCHIVE.value else None,
      cache_dir=_CACHE.value.replace("<root>", str(root)),
      jobs=_JOBS.value,
      extra=_SET.value,
    )
  except ValueError as error:
    raise app.UsageError(str(error)) from None
  print("[sweep] " + ", ".join(f"{key}: {len(names)}" for key, names in outcome.items()))
  if outcome["failed"]:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

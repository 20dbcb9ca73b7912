"""Pieces the trainer tests share: loading configs, tiny overrides, the compilation cache."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))  # For `from configs import glue`.
CACHE_DIR = pathlib.Path(os.environ.get("PATS_TEST_JAX_CACHE", "/tmp/pats_jax_test_xla_cache"))

# Overrides that make any shipped config a tiny run on synthetic data.
TINY = {
  "model": "tiny-bert",
  "data.data_dir": "tiny",
  "data.max_length": 32,
  "data.bucket_multiple": 8,
  "batch_size": 8,
  "eval_batch_size": 16,
  "max_steps": 2,
  "eval_every_steps": 0,
  "checkpoint_every_steps": 0,
  "log_every_steps": 1,
  "write_test_predictions": False,
  "progress_bar": False,
  "mesh.data": 1,
}


def load_config(path: str | os.PathLike[str], arg: str | None = None):
  """Loads a config file's `get_config(arg)` the way `train.py --config path[:arg]` does, locked.

  Args:
    path: a config file (`configs/*.py`); it may import `configs.*` from the repository root.
    arg: the text after `:` in `--config path:arg`, or None.

  Returns:
    The locked `ml_collections.ConfigDict`.
  """
  path = pathlib.Path(path).resolve()
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg is not None else module.get_config()
  config.lock()
  return config


def override(config, **values):
  """Sets dotted fields (`"mesh.data"` may be given as `mesh__data`) of a locked config."""
  for key, value in values.items():
    node = config
    *parents, leaf = key.replace("__", ".").split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def tiny_config(path: str = "configs/tiny.py", arg: str | None = None, **values):
  """A shipped config with the `TINY` overrides and then `values`."""
  config = load_config(REPO_ROOT / path, arg)
  return override(override(config, **TINY), **values)


def cache_env() -> dict[str, str]:
  """Environment for `python train.py` subprocesses: the shared compilation cache, 1 device."""
  env = dict(os.environ)
  env.update(
    {
      "JAX_COMPILATION_CACHE_DIR": str(CACHE_DIR),
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
      "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
      "JAX_PLATFORMS": "cpu",
      "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    }
  )
  return env


def use_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache in this process (repeated tiny runs)."""
  import jax

  jax.config.update("jax_compilation_cache_dir", str(CACHE_DIR))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def train_command(workdir: pathlib.Path, config: str = "configs/tiny.py", **values) -> list[str]:
  """`python train.py --config <config> --workdir <workdir> --config.k=v ...`."""
  args = [
    sys.executable,
    str(REPO_ROOT / "train.py"),
    f"--config={REPO_ROOT / config}",
    f"--workdir={workdir}",
  ]
  return args + [f"--config.{key.replace('__', '.')}={value}" for key, value in values.items()]

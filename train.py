r"""Fine-tunes a BERT/RoBERTa on a GLUE task (or your own data) with PATS or a baseline.

  python train.py                                   # the embedded default: configs/default.py
  python train.py --config configs/glue.py:task=rte,method=pats,model=roberta-base \
      --workdir workdirs/rte_pats --config.seed=1 --config.pats.noise_scale=0.05
  python train.py --config configs/tiny.py --workdir /tmp/tiny    # seconds, no downloads
  python train.py --print_config                    # every field, its value and meaning

Any config field can be overridden with --config.<field>=<value> (e.g. --config.num_epochs=1);
--print_config lists them all, with the overrides applied. GLUE is read from
--config.data.data_dir, $GLUE_DIR or ./glue_data (a folder in the layout of download_glue_data.py
from https://github.com/nyu-mll/GLUE-baselines), else downloaded from the Hugging Face hub
(nyu-mll/glue).

Re-running with the same workdir resumes from its newest checkpoint. Outputs in the workdir:
config.json, metrics.jsonl, results.json, checkpoints/, best/, glue_submission/. A mistake in the
config or missing data stops the run with exit status 2 and leaves no new workdir behind.
One run at a time uses a workdir (run.lock), and a rerun must keep the config it was started
with, except fields that cannot change the result (logging, evaluation and checkpoint cadence,
max_steps, ...); name an intended change with --allow_config_change=field1,field2.
"""

from __future__ import annotations

import json
import logging as std_logging
import pathlib
import signal
import sys
from typing import NoReturn

from absl import app, flags, logging
from ml_collections import config_flags

_ROOT = pathlib.Path(__file__).resolve().parent
_BASE_CONFIG = _ROOT / "configs" / "glue.py"
USAGE_EXIT_STATUS = 2


def _fail(message: str) -> NoReturn:
  """Prints a user mistake as one message, without traceback, and exits with status 2."""
  print(f"train.py: error: {message}", file=sys.stderr)
  print("(python train.py --help for usage; --print_config lists every field)", file=sys.stderr)
  sys.exit(USAGE_EXIT_STATUS)


def _unwrap(error: BaseException) -> str:
  """The message of a config-loading error, without the wrappers' quoting."""
  while len(error.args) == 1 and isinstance(error.args[0], BaseException):
    error = error.args[0]
  if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
    return error.args[0]
  return str(error)


def _override_in(argv: list[str], field: str) -> str:
  """The `--config.<...>` argument that names `field`, for the message."""
  for arg in argv:
    if arg.startswith("--config.") and field in arg.split("=", 1)[0]:
      return arg
  return ""


def _config_error(argv: list[str], error: BaseException) -> NoReturn:
  """Reports an error of loading or overriding the config as one message (exit status 2)."""
  message = _unwrap(error).strip()
  field, _, hint = message.partition("\n")
  field = field.strip("'\"")
  argument = _override_in(argv, field)
  if argument and isinstance(error, AttributeError | KeyError):
    _fail(f"{argument}: the config has no field {field!r}. {hint.strip()}".strip())
  _fail(" ".join(message.split()))


def _flag_error(error: flags.Error) -> NoReturn:
  """Reports a flag error as one message; a config file's own error keeps its last line only."""
  message = str(error).strip()
  if "Traceback (most recent call last)" in message:
    head = message.split("Traceback (most recent call last)")[0].strip().rstrip(":")
    last = message.splitlines()[-1].strip()
    message = f"{head}: {last}"
  _fail(message)


def parse_flags(argv: list[str]) -> list[str]:
  """`FLAGS(argv)`, with config and flag mistakes turned into one message and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as error:
    _flag_error(error)
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as error:
    _config_error(argv, error)


try:  # Overrides (--config.<field>=...) are matched against the config here, at definition.
  _CONFIG = config_flags.DEFINE_config_file(
    "config",
    default=str(_ROOT / "configs" / "default.py"),
    help_string="Config file (configs/*.py[:args]); override any field with "
    "--config.<field>=<value>; python train.py --print_config lists every field.",
    lock_config=True,
  )
except (AttributeError, KeyError, TypeError, ValueError) as error:
  _config_error(sys.argv, error)
_WORKDIR = flags.DEFINE_string(
  "workdir", "workdirs/default", "Folder for checkpoints and results; a rerun resumes from it."
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_list(
  "allow_config_change",
  [],
  "Config fields (comma separated, e.g. num_epochs,learning_rate) that may differ from the "
  "config an existing workdir's run was started with; without it such a rerun stops.",
)
_COMPILE_FOR = flags.DEFINE_string(
  "compile_for",
  None,
  "A TPU slice (v5e-256, v5p-128, v4-32, v6e-8) or topology (v5e:2x2, v4:2x2x2): compile the "
  "run's steps for it on this machine, print per chip the memory, kernels, collectives and the "
  "TPU compiler's time estimates, and exit (status 2 if the run does not fit). Needs libtpu: "
  'pip install -e ".[tpu]". Trains nothing and writes no workdir.',
)
_PRINT_CONFIG = flags.DEFINE_boolean(
  "print_config",
  False,
  "Print every config field with its value (overrides applied) and description, then exit.",
)


def print_config(config, config_file: str) -> None:
  """Prints every field of `config` with its value and the description from the config files."""
  from pats_jax.training import config_docs

  docs = config_docs.field_docs(_BASE_CONFIG)  # The meaning of every field, in file order.
  path = pathlib.Path(config_file.split(":", 1)[0])
  if path.resolve() != _BASE_CONFIG:  # Fields that only this config file adds.
    docs.update({k: v for k, v in config_docs.field_docs(path).items() if k not in docs})
  if hasattr(signal, "SIGPIPE"):  # `python train.py --print_config | head` ends quietly.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
  print(f"# --config={config_file}; override a field with --config.<field>=<value>")
  print(config_docs.describe(config, docs))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]}; flags take the form --name=value")
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  if not pathlib.Path(config_file.split(":", 1)[0]).is_file():
    _fail(f"--config={config_file}: no such file; give a config file such as configs/glue.py")
  config = _CONFIG.value
  logging.set_verbosity(logging.WARNING)  # Quiet imports (datasets logs its backends at INFO).
  if _PRINT_CONFIG.value:
    print_config(config, config_file)
    return
  if _COMPILE_FOR.value:  # A dry run for a TPU slice: compiles and reports, trains nothing.
    from pats_jax.training import dry_run

    try:
      dry_run.run(config, _COMPILE_FOR.value)
    except dry_run.DryRunError as error:
      _fail(str(error))
    return
  from pats_jax.training import sources, train_and_evaluate, validate

  logging.set_verbosity(logging.INFO)
  # Orbax logs every save and restore at INFO, and JAX every backend it does not find (TPU,
  # GPU); keep their warnings only.
  logging.get_absl_handler().python_handler.addFilter(
    lambda record: (
      record.levelno >= std_logging.WARNING
      or not any(name in record.pathname for name in ("orbax", "xla_bridge"))
    )
  )
  try:
    results = train_and_evaluate(
      config, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value
    )
  except (validate.ConfigError, sources.SourceError) as error:
    _fail(str(error))
  if "preempted" in results:  # A SIGTERM: the message says what was saved.
    print(results["message"])
    return
  print(
    json.dumps(
      {
        "final": results["final"],
        "best": results["best"],
        "wall_time_seconds": round(results["wall_time_seconds"], 1),
      },
      indent=2,
    )
  )


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)

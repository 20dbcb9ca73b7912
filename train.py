r"""Fine-tunes a BERT/RoBERTa on a GLUE task (or your own data) with PATS or a baseline.

  python train.py                                   # the embedded default: configs/default.py
  python train.py --config configs/glue.py:task=rte,method=pats,model=roberta-base \
      --workdir workdirs/rte_pats --config.seed=1 --config.pats.noise_scale=0.05

Re-running with the same workdir resumes from its newest checkpoint. Outputs in the workdir:
config.json, metrics.jsonl, results.json, checkpoints/, best/, glue_submission/.
"""

from __future__ import annotations

import json
import logging as std_logging
import pathlib

from absl import app, flags, logging
from ml_collections import config_flags

from pats_jax.training import train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  default=str(pathlib.Path(__file__).resolve().parent / "configs" / "default.py"),
  help_string="Config file (configs/*.py[:args]); override fields with --config.a.b=value.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", "workdirs/default", "Folder for checkpoints and results; a rerun resumes from it."
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  # Orbax logs every save and restore at INFO; keep its warnings only.
  logging.get_absl_handler().python_handler.addFilter(
    lambda record: "orbax" not in record.pathname or record.levelno >= std_logging.WARNING
  )
  results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if "preempted" in results:
    print(f"Preempted at step {results['preempted']}; rerun the same command to resume.")
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
  app.run(main)

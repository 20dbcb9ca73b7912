"""A non-finite loss stops the run and keeps the last good checkpoint, or is skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _train_helpers import tiny_config, use_compilation_cache

from pats_jax.data import synthetic
from pats_jax.training import trainer


def _glue_with_nan_scores(folder, rows=(5, 40)):
  """A tiny GLUE folder whose STS-B training file has NaN scores on a few rows."""
  synthetic.write_synthetic_glue(folder)
  path = folder / "STS-B" / "train.tsv"
  lines = path.read_text().splitlines()
  for row in rows:
    fields = lines[row + 1].split("\t")
    fields[-1] = "nan"
    lines[row + 1] = "\t".join(fields)
  path.write_text("\n".join(lines) + "\n")
  return folder


def _config(data_dir, **values):
  return tiny_config(
    arg="task=stsb,method=pats",
    **{
      "data.data_dir": str(data_dir),
      "max_steps": -1,
      "num_epochs": 1,
      "checkpoint_every_steps": 1,
      "eval_every_steps": 0,
      **values,
    },
  )


@pytest.mark.slow
def test_nonfinite_loss_stops_with_the_last_good_checkpoint(tmp_path):
  use_compilation_cache()
  config = _config(_glue_with_nan_scores(tmp_path / "glue"))
  with pytest.raises(trainer.NonFiniteLossError, match="last good checkpoint") as error:
    trainer.train_and_evaluate(config, tmp_path / "run")
  message = str(error.value)
  assert "apply_if_finite" in message
  records = [
    json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  ]
  first_bad = next(r["step"] for r in records if r.get("loss") is None and "loss" in r)
  saved = sorted(
    int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert saved and max(saved) < first_bad
  assert f"step {max(saved)}" in message
  assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_apply_if_finite_skips_nonfinite_steps(tmp_path):
  use_compilation_cache()
  config = _config(
    _glue_with_nan_scores(tmp_path / "glue"), apply_if_finite=True, checkpoint_every_steps=0
  )
  results = trainer.train_and_evaluate(config, tmp_path / "run")
  assert results["nonfinite_steps"] >= 1
  assert all(np.isfinite(value) for value in results["final"]["metrics"].values())
  records = [
    json.loads(line)
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    if "loss" in line
  ]
  assert all(np.isfinite(r["param_norm"]) for r in records)

"""A few PATS steps of a tiny random ModernBERT through the trainer with its layers stacked
(`model_config.scan_layers`): global and local layers in one `[L, ...]` stack, PATS per layer
(`layer_axis` 0).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from _train_helpers import tiny_config, use_compilation_cache

from pats_jax.training import trainer


@pytest.mark.slow
def test_tiny_modernbert_trains_with_pats_on_stacked_layers(tmp_path):
  use_compilation_cache()
  config = tiny_config(
    arg="task=rte,method=pats,model=tiny-modernbert",
    model="tiny-modernbert",
    max_steps=3,
    model_config__scan_layers=True,
  )
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["final"]["step"] == 3
  folder = tmp_path / "tiny-modernbert_model"
  assert json.loads((folder / "config.json").read_text())["model_type"] == "modernbert"
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = [line for line in lines if "loss" in line]
  assert [line["step"] for line in steps] == [1, 2, 3]
  for name in ("loss", "grad_norm", "update_norm", "pats/amplitude_mean"):
    assert np.isfinite(steps[-1][name]), name

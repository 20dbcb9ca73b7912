"""Every tiny random model (`config.model=tiny-<family>`) trains a few steps through train.py."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from _train_helpers import cache_env, train_command

from pats_jax import models
from pats_jax.training import sources


def test_every_family_has_a_tiny_model_and_the_names_are_listed(monkeypatch):
  monkeypatch.setattr(sources, "hub_reachable", lambda: False)
  assert set(sources.TINY_MODELS.values()) == set(models.SUPPORTED_MODEL_TYPES)
  help_text = sources.model_help("nowhere/model")
  for name in ("electra-base", "electra-large", "tiny-electra"):
    assert name in help_text
  for name in ("modernbert-base", "modernbert-large", "tiny-modernbert"):
    assert name in help_text
  assert sources.MODEL_HUB_IDS["modernbert-base"] == "answerdotai/ModernBERT-base"
  assert sources.MODEL_HUB_IDS["modernbert-large"] == "answerdotai/ModernBERT-large"
  assert sources.MODEL_HUB_IDS["electra-base"] == "google/electra-base-discriminator"
  assert sources.MODEL_HUB_IDS["electra-large"] == "google/electra-large-discriminator"


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(sources.TINY_MODELS))
def test_tiny_model_trains_through_train_py(tmp_path, model):
  workdir = tmp_path / "run"
  command = train_command(
    workdir,
    f"configs/tiny.py:model={model},method=pats",
    max_steps=3,
    eval_every_steps=0,
    checkpoint_every_steps=0,
    write_test_predictions=False,
  )
  result = subprocess.run(
    command, cwd=tmp_path, env=cache_env(), capture_output=True, text=True, timeout=600
  )
  assert result.returncode == 0, result.stderr[-3000:]
  written = json.loads((workdir / f"{model}_model" / "config.json").read_text())
  assert written["model_type"] == sources.TINY_MODELS[model]
  results = json.loads((workdir / "results.json").read_text())
  assert results["final"]["step"] == 3
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = [line["loss"] for line in lines if "loss" in line]
  assert len(losses) == 3 and np.isfinite(losses).all()
  assert any("pats/amplitude_mean" in line for line in lines)

"""checkpointing._preemption_service_running: JAX's private state, else the public flag."""

from __future__ import annotations

import jax
from jax._src import distributed

from pats_jax.training import checkpointing


def test_service_state_read_from_jax(monkeypatch):
  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", None)
  assert not checkpointing._preemption_service_running()
  monkeypatch.setattr(distributed.global_state, "preemption_sync_manager", object())
  assert checkpointing._preemption_service_running()


def test_falls_back_to_the_public_flag_if_jax_moves_its_state(monkeypatch):
  monkeypatch.setattr(distributed, "global_state", object())  # No preemption_sync_manager.
  before = jax.config.jax_enable_preemption_service
  try:
    for enabled in (True, False):
      jax.config.update("jax_enable_preemption_service", enabled)
      assert checkpointing._preemption_service_running() is enabled
  finally:
    jax.config.update("jax_enable_preemption_service", before)

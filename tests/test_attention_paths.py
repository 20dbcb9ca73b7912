"""Which `jax.nn.dot_product_attention` implementation each layer asks for (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _train_helpers import REPO_ROOT, cache_env

from pats_jax import models
from pats_jax.models import tiny


def test_cudnn_model_runs_single_query_attention_through_xla(tmp_path, monkeypatch):
  # cuDNN flash attention rejects a 1-token query ("Unsupported sequence length Q 1" on an
  # H200), which the last layer's first-token-only path has. Record the requested
  # implementations while XLA computes everything (cuDNN is absent on the CPU).
  asked = []
  xla_attention = jax.nn.dot_product_attention

  def recording(query, key, value, *args, implementation=None, key_value_seq_lengths=None, **kw):
    asked.append((query.shape[1], implementation))
    if key_value_seq_lengths is not None:  # cuDNN's padding form, as a mask for XLA.
      positions = jnp.arange(key.shape[1])
      kw["mask"] = (positions[None, :] < key_value_seq_lengths[:, None])[:, None, None, :]
    return xla_attention(query, key, value, *args, implementation="xla", **kw)

  monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
  folder = tiny.write_tiny_checkpoint(tmp_path / "m", tokenizer=False)
  cudnn = models.load(folder, num_labels=2, dtype=jnp.bfloat16, attention="cudnn")
  xla = models.load(folder, num_labels=2, dtype=jnp.bfloat16, attention="xla")
  ids = jnp.asarray(np.random.default_rng(0).integers(5, 90, (2, 8)), jnp.int32)
  mask = jnp.asarray([[1] * 8, [1] * 5 + [0] * 3], jnp.int32)
  asked.clear()  # Loading traces the model too.
  logits = cudnn.module.apply({"params": cudnn.params}, ids, mask)
  layers = cudnn.config.num_hidden_layers
  assert asked == [(8, "cudnn")] * (layers - 1) + [(1, "xla")]
  asked.clear()
  reference = xla.module.apply({"params": xla.params}, ids, mask)
  assert {impl for _, impl in asked} == {"xla"}
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), rtol=2e-2, atol=2e-2)


def test_gpu_attention_check_says_it_needs_a_gpu():
  result = subprocess.run(
    [sys.executable, "-m", "scripts.bench.gpu_attention"],
    cwd=REPO_ROOT,
    capture_output=True,
    text=True,
    env=cache_env(),
    timeout=120,
  )
  assert result.returncode == 2, result.stderr[-2000:]
  assert "needs a GPU; the backend is cpu" in result.stdout

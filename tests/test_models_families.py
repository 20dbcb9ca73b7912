"""What every registered model family gives, checked on its tiny random checkpoint.

Each family (`pats_jax.models.SUPPORTED_MODEL_TYPES`) loads its `tiny.write_tiny_checkpoint`
folder without unused or missing tensors, takes the trainer's call signature, runs in both layer
layouts, with remat and in bfloat16, names a logical axis (with a sharding rule) for every
dimension of every parameter, shards under FSDP, fits the default weight-matrix mask, and
round-trips through `save_pretrained` into transformers' PyTorch class with the same logits.
"""

from __future__ import annotations

import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

import pats_jax
from pats_jax import models
from pats_jax.models import convert, registry, tiny

FAMILIES = models.SUPPORTED_MODEL_TYPES
ATOL = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def folder(request, tmp_path_factory):
  """The family's tiny checkpoint, 3 layers, with its head."""
  out = tmp_path_factory.mktemp(request.param)
  return tiny.write_tiny_checkpoint(out, model_type=request.param, num_hidden_layers=3)


def batch(config, seed=0):
  """Right-padded ids (the padding id at padding), mask and all-zero token types."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, config.vocab_size, (3, 9)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 5:] = 0
  mask[2, 2:] = 0
  ids[mask == 0] = getattr(config, "pad_token_id", 0)
  return ids, mask, np.zeros_like(ids)


def loss_and_grads(pretrained, deterministic=True):
  ids, mask, types = batch(pretrained.config)

  def loss(params):
    logits = pretrained.module.apply(
      {"params": params},
      ids,
      mask,
      types,
      deterministic=deterministic,
      rngs={"dropout": jax.random.key(0)},
    )
    return jnp.sum(jnp.sin(3.0 * logits)), logits

  return jax.jit(jax.grad(loss, has_aux=True))(pretrained.params)


def test_loads_every_tensor_and_takes_the_trainers_arguments(folder):
  pretrained = models.load(folder, num_labels=2)
  assert pretrained.newly_initialized == [] and pretrained.unused_tensors == []
  ids, mask, types = batch(pretrained.config)
  apply = functools.partial(pretrained.module.apply, {"params": pretrained.params})
  logits = apply(ids, mask, types, deterministic=True)
  assert logits.shape == (3, 2) and logits.dtype == jnp.float32
  np.testing.assert_array_equal(apply(ids, mask, None), logits)
  hidden_logits, hidden = apply(ids, mask, types, return_hidden=True)
  assert hidden.shape == (3, 9, pretrained.config.hidden_size)
  np.testing.assert_allclose(hidden_logits, logits, rtol=0, atol=ATOL)
  train = lambda seed: apply(ids, mask, types, False, rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1)) and not np.allclose(train(0), logits)


def test_stacked_layers_and_remat_give_the_same_logits_and_gradients(folder):
  plain = models.load(folder, num_labels=2, hidden_dropout=0.0, attention_dropout=0.0)
  grads, logits = loss_and_grads(plain)
  assert max(np.abs(g).max() for g in jax.tree.leaves(grads)) > 1e-3
  layouts = ({"scan_layers": True}, {"scan_layers": 2}, {"scan_layers": 1000})
  for options in (*layouts, {"remat": True}, {"scan_layers": True, "remat": True}):
    other = models.load(folder, num_labels=2, hidden_dropout=0.0, attention_dropout=0.0, **options)
    other_grads, other_logits = loss_and_grads(other)
    np.testing.assert_allclose(other_logits, logits, rtol=0, atol=ATOL, err_msg=str(options))
    other_grads = models.unstack_layers(other_grads)
    assert jax.tree.structure(other_grads) == jax.tree.structure(grads)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-5)
    jax.tree.map(close, other_grads, grads)


def test_bfloat16_compute(folder):
  f32 = models.load(folder, num_labels=2)
  bf16 = models.load(folder, num_labels=2, dtype=jnp.bfloat16, remat=True)
  assert {leaf.dtype for leaf in jax.tree.leaves(bf16.params)} == {jnp.dtype(jnp.float32)}
  grads, logits = loss_and_grads(bf16, deterministic=False)
  assert logits.dtype == jnp.float32
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  ids, mask, types = batch(f32.config)
  reference = f32.module.apply({"params": f32.params}, ids, mask, types)
  low = bf16.module.apply({"params": bf16.params}, ids, mask, types)
  np.testing.assert_allclose(low, reference, rtol=0, atol=0.1)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_every_parameter_has_logical_axes_with_a_rule(folder, scan_layers):
  pretrained = models.load(folder, num_labels=2, scan_layers=scan_layers)
  specs = models.logical_axes(pretrained)
  is_spec = lambda x: isinstance(x, PartitionSpec)
  ruled = {name for name, _ in models.axis_rules(fsdp=True, tensor=True)}
  for (path, spec), leaf in zip(
    jax.tree_util.tree_flatten_with_path(specs, is_leaf=is_spec)[0],
    jax.tree.leaves(pretrained.params),
    strict=True,
  ):
    where = jax.tree_util.keystr(path)
    assert len(spec) == leaf.ndim, where
    assert set(spec) <= ruled, where
    assert (spec[0] == "layers") == (scan_layers and where.startswith("['encoder']['layers']"))


def test_fsdp_sharded_apply_matches_single_device(folder):
  pretrained = models.load(folder, num_labels=2, scan_layers=True)
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp"))
  rules = models.axis_rules(fsdp=True)
  shardings = nn.logical_to_mesh_sharding(models.logical_axes(pretrained), mesh, rules)
  params = jax.device_put(pretrained.params, shardings)
  sharded = [leaf for leaf in jax.tree.leaves(params) if "fsdp" in leaf.sharding.spec]
  assert len(sharded) >= len(jax.tree.leaves(params)) // 2
  ids, mask, types = batch(pretrained.config)
  apply = jax.jit(lambda p: pretrained.module.apply({"params": p}, ids, mask, types))
  single = pretrained.module.apply({"params": pretrained.params}, ids, mask, types)
  np.testing.assert_allclose(apply(params), single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_default_weight_matrix_mask_selects_kernels_and_embeddings(folder, scan_layers):
  params = models.load(folder, num_labels=2, scan_layers=scan_layers).params
  mask = pats_jax.weight_matrix_mask(params)
  for path, selected in jax.tree_util.tree_flatten_with_path(mask)[0]:
    assert selected == (path[-1].key in ("kernel", "embedding")), jax.tree_util.keystr(path)


def test_save_pretrained_loads_in_transformers_with_the_same_logits(folder, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pretrained = models.load(folder, num_labels=3, reinit_head=True, seed=2)
  tuned = jax.tree.map(lambda x: x + 0.01, pretrained.params)
  out = models.save_pretrained(pretrained, tuned, tmp_path / "out")
  model = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  family = registry.get(pretrained.config.model_type)
  assert type(model).__name__ == family.architecture and model.config.num_labels == 3
  ids, mask, types = batch(pretrained.config)
  inputs = {"input_ids": torch.tensor(ids).long(), "attention_mask": torch.tensor(mask).long()}
  if "token_type_ids" in inspect.signature(model.forward).parameters:
    inputs["token_type_ids"] = torch.tensor(types).long()
  with torch.no_grad():
    expected = model(**inputs).logits.numpy()
  ours = pretrained.module.apply({"params": tuned}, ids, mask, types)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)
  again = models.load(out, num_labels=3)
  assert again.newly_initialized == [] and again.unused_tensors == []
  # Every tensor a checkpoint holds comes back (a family may have leaves it does not hold:
  # `convert.unstored`, e.g. ModernBERT's unused first attention norm).
  stored = lambda params: convert.to_hf(params, pretrained.config)
  jax.tree.map(np.testing.assert_array_equal, stored(again.params), stored(tuned))

"""Stacked layers (`scan_layers=True`): same numbers as the per-layer layout, HF round trip,
layout helpers, layer axes for the optimizer, and one compiled layer body."""

from __future__ import annotations

import functools
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from pats_jax import models
from pats_jax.models import bert, checkpoint_io, tiny
from pats_jax.models.config import ModelConfig

ATOL = 1e-5


def batch(vocab_size=128, seed=0):
  """Right-padded ids, mask and token types of 4 rows."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, vocab_size, (4, 10)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 6:] = 0
  mask[3, 3:] = 0
  ids[mask == 0] = 0
  types = np.zeros_like(ids)
  types[:, 5:] = 1
  return ids, mask, types * mask


def both_layouts(folder, **kwargs):
  """The checkpoint loaded per-layer and stacked."""
  return (
    models.load(folder, num_labels=2, attention="xla", **kwargs),
    models.load(folder, num_labels=2, attention="xla", scan_layers=True, **kwargs),
  )


def per_layer_leaves(params) -> int:
  return len(jax.tree.leaves(params["encoder"]["layer_0"]))


@pytest.mark.parametrize(
  ("model_type", "num_layers", "remat"),
  [("bert", 3, False), ("bert", 3, True), ("roberta", 3, False), ("roberta", 1, True)],
)
def test_stacked_matches_per_layer(tmp_path, model_type, num_layers, remat):
  folder = tiny.write_tiny_checkpoint(
    tmp_path, model_type=model_type, num_hidden_layers=num_layers, tokenizer=False
  )
  plain, stacked = both_layouts(folder, remat=remat, hidden_dropout=0.0, attention_dropout=0.0)
  assert models.is_stacked(stacked.params) and not models.is_stacked(plain.params)
  jax.tree.map(np.testing.assert_array_equal, models.stack_layers(plain.params), stacked.params)
  query = stacked.params["encoder"]["layers"]["attention"]["query"]["kernel"]
  assert query.shape == (num_layers, 32, 4, 8)
  ids, mask, types = batch()

  def loss(module, params):
    logits = module.apply({"params": params}, ids, mask, types, deterministic=False)
    return jnp.sum(logits**2), logits

  grad = lambda p: jax.jit(jax.grad(functools.partial(loss, p.module), has_aux=True))(p.params)
  (grads_plain, logits_plain), (grads_stacked, logits_stacked) = grad(plain), grad(stacked)
  np.testing.assert_allclose(logits_stacked, logits_plain, rtol=0, atol=ATOL)
  unstacked = models.unstack_layers(grads_stacked)
  assert jax.tree.structure(unstacked) == jax.tree.structure(grads_plain)
  jax.tree.map(
    functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), unstacked, grads_plain
  )
  assert max(np.abs(g).max() for g in jax.tree.leaves(grads_plain)) > 1e-3  # not all zero

  hidden = lambda p: p.module.apply({"params": p.params}, ids, mask, types, return_hidden=True)
  (logits_a, hidden_a), (logits_b, hidden_b) = hidden(plain), hidden(stacked)
  np.testing.assert_allclose(logits_b, logits_a, rtol=0, atol=ATOL)
  np.testing.assert_allclose(logits_b, logits_plain, rtol=0, atol=ATOL)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden_b)[real], np.asarray(hidden_a)[real], atol=ATOL)


def test_stacked_dropout_draws_per_layer_and_per_seed(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, num_hidden_layers=3, tokenizer=False)
  stacked = models.load(folder, num_labels=2, scan_layers=True)
  ids, mask, types = batch()

  def train(seed, params=stacked.params):
    rngs = {"dropout": jax.random.key(seed)}
    return np.asarray(stacked.module.apply({"params": params}, ids, mask, types, False, rngs=rngs))

  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  evaluate = stacked.module.apply({"params": stacked.params}, ids, mask, types)
  assert not np.allclose(train(0), evaluate)


@pytest.mark.parametrize("unroll", [2, 3, 1000])
def test_unrolled_loop_draws_the_same_masks_as_the_loop(tmp_path, unroll):
  folder = tiny.write_tiny_checkpoint(tmp_path, num_hidden_layers=3, tokenizer=False)
  loop = models.load(folder, num_labels=2, scan_layers=True)
  unrolled = models.load(folder, num_labels=2, scan_layers=unroll)
  jax.tree.map(np.testing.assert_array_equal, unrolled.params, loop.params)
  ids, mask, types = batch()

  def train(pretrained, **kwargs):
    rngs = {"dropout": jax.random.key(4)}
    return pretrained.module.apply(
      {"params": pretrained.params}, ids, mask, types, False, rngs=rngs, **kwargs
    )

  np.testing.assert_allclose(train(unrolled), train(loop), rtol=0, atol=ATOL)
  (_, hidden), (_, hidden_loop) = (
    train(unrolled, return_hidden=True),
    train(loop, return_hidden=True),
  )
  np.testing.assert_allclose(hidden, hidden_loop, rtol=0, atol=ATOL)


def test_layer_layout_maps_the_config_fields():
  assert models.layer_layout(False, 1) is False and models.layer_layout(False, 0) is False
  assert models.layer_layout(True, 1) is True
  assert models.layer_layout(True, 4) == 4
  assert models.layer_layout(True, 0) >= 10**6  # every layer of any model in one iteration


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_save_pretrained_from_stacked_loads_in_transformers(tmp_path, model_type):
  torch = pytest.importorskip("torch")
  from transformers import AutoModelForSequenceClassification

  source = tiny.write_tiny_checkpoint(
    tmp_path / "src", model_type=model_type, num_hidden_layers=3, with_head=False, tokenizer=False
  )
  plain, stacked = both_layouts(source, seed=1)
  out = models.save_pretrained(stacked, stacked.params, tmp_path / "out")
  reference = models.save_pretrained(plain, plain.params, tmp_path / "reference")
  saved = checkpoint_io.read_safetensors(out / "model.safetensors")
  expected = checkpoint_io.read_safetensors(reference / "model.safetensors")
  assert sorted(saved) == sorted(expected)
  for name, tensor in expected.items():
    np.testing.assert_array_equal(saved[name], tensor, err_msg=name)

  torch_model = AutoModelForSequenceClassification.from_pretrained(out).eval()
  ids, mask, types = batch()
  if model_type == "roberta":
    ids = np.where(mask == 1, ids, 1)
  inputs = {"input_ids": torch.tensor(ids).long(), "attention_mask": torch.tensor(mask).long()}
  if model_type == "bert":
    inputs["token_type_ids"] = torch.tensor(types).long()
  with torch.no_grad():
    torch_logits = torch_model(**inputs).logits.numpy()
  ours = stacked.module.apply({"params": stacked.params}, ids, mask, types)
  np.testing.assert_allclose(np.asarray(ours), torch_logits, rtol=0, atol=ATOL)
  reloaded = models.load(out, num_labels=2, scan_layers=True)
  jax.tree.map(np.testing.assert_array_equal, reloaded.params, stacked.params)


def test_stack_and_unstack_are_inverse_and_idempotent():
  config = ModelConfig.from_hf_dict(tiny.tiny_config(num_hidden_layers=4), num_labels=2)
  shapes = jax.eval_shape(
    lambda: bert.SequenceClassifier(config).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))
  )
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.normal(size=s.shape), nn.meta.unbox(shapes)["params"])
  stacked = models.stack_layers(params)
  assert set(stacked["encoder"]) == {"embeddings", "layers"}
  assert stacked["encoder"]["layers"]["output"]["kernel"].shape == (4, 37, 32)
  assert isinstance(stacked["encoder"]["layers"]["output"]["kernel"], np.ndarray)
  jax.tree.map(np.testing.assert_array_equal, models.unstack_layers(stacked), params)
  assert models.stack_layers(stacked)["encoder"]["layers"] is stacked["encoder"]["layers"]
  assert models.unstack_layers(params)["encoder"]["layer_3"] is params["encoder"]["layer_3"]
  abstract = models.stack_layers(
    jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  )
  assert abstract["encoder"]["layers"]["attention"]["query"]["kernel"].shape == (4, 32, 4, 8)


def test_stack_layers_rejects_layers_of_different_shapes():
  layer = lambda width: {"output": {"kernel": np.zeros((width, 2))}}
  params = {"encoder": {"layer_0": layer(3), "layer_1": layer(4)}, "head": {}}
  with pytest.raises(ValueError, match="cannot stack"):
    models.stack_layers(params)
  with pytest.raises(ValueError, match=r"layer_0 \.\. layer_1"):
    models.stack_layers({"encoder": {"layer_0": layer(3), "layer_2": layer(3)}})


def test_stacking_cuts_the_number_of_leaves(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, num_hidden_layers=6, tokenizer=False)
  plain, stacked = both_layouts(folder)
  per_layer = per_layer_leaves(plain.params)
  n_plain, n_stacked = len(jax.tree.leaves(plain.params)), len(jax.tree.leaves(stacked.params))
  assert n_plain == n_stacked + 5 * per_layer
  assert n_stacked < n_plain / 3


def test_layer_axes_name_the_stacked_axis(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, num_hidden_layers=2, tokenizer=False)
  plain, stacked = both_layouts(folder)
  specs = models.logical_axes(stacked)
  query = specs["encoder"]["layers"]["attention"]["query"]["kernel"]
  assert query == PartitionSpec("layers", "embed", "heads", "kv")
  is_none = lambda x: x is None
  from_names = models.layer_axes(specs)
  from_params = models.layer_axes(stacked.params)
  for axes in (from_names, from_params):
    assert jax.tree.structure(axes, is_leaf=is_none) == jax.tree.structure(stacked.params)
    flat = jax.tree_util.tree_flatten_with_path(axes, is_leaf=is_none)[0]
    for path, axis in flat:
      under_layers = jax.tree_util.keystr(path).startswith("['encoder']['layers']")
      assert axis == (0 if under_layers else None), jax.tree_util.keystr(path)
  assert set(jax.tree.leaves(models.layer_axes(models.logical_axes(plain)), is_leaf=is_none)) == {
    None
  }
  assert set(jax.tree.leaves(models.layer_axes(plain.params), is_leaf=is_none)) == {None}


@pytest.mark.parametrize(("fsdp", "tensor"), [(True, False), (True, True)])
def test_stacked_sharded_apply_matches_single_device(tmp_path, fsdp, tensor):
  folder = tiny.write_tiny_checkpoint(
    tmp_path, num_hidden_layers=2, intermediate_size=48, tokenizer=False
  )
  stacked = models.load(folder, num_labels=2, scan_layers=True)
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
  rules = models.axis_rules(fsdp=fsdp, tensor=tensor)
  shardings = nn.logical_to_mesh_sharding(models.logical_axes(stacked), mesh, rules)
  params = jax.device_put(stacked.params, shardings)
  query = params["encoder"]["layers"]["attention"]["query"]["kernel"]
  assert query.sharding.spec == PartitionSpec(None, "fsdp", "tensor" if tensor else None, None)
  ids, mask, types = batch()
  apply = jax.jit(lambda p: stacked.module.apply({"params": p}, ids, mask, types))
  single = stacked.module.apply({"params": stacked.params}, ids, mask, types)
  np.testing.assert_allclose(np.asarray(apply(params)), np.asarray(single), rtol=1e-5, atol=1e-6)


def lowered_forward_backward(num_layers: int, scan_layers: bool | int):
  """The jitted loss-and-gradient of a random tiny BERT, lowered (not compiled)."""
  hf = tiny.tiny_config(num_hidden_layers=num_layers)
  module = bert.SequenceClassifier(
    ModelConfig.from_hf_dict(hf, num_labels=2), attention="xla", scan_layers=scan_layers
  )
  ids, mask, types = (jnp.asarray(x) for x in batch())
  params = nn.meta.unbox(jax.eval_shape(module.init, jax.random.key(0), ids, mask, types))
  loss = lambda p: jnp.sum(module.apply(p, ids, mask, types) ** 2)
  return jax.jit(jax.value_and_grad(loss)).lower(params)


def test_jit_holds_one_layer_body_unless_unrolled():
  count = lambda lowered, op: len(re.findall(rf"\b{op}\b", lowered.as_text()))
  dots = {
    (n, scan): count(lowered_forward_backward(n, scan), "stablehlo.dot_general")
    for n in (3, 6)
    for scan in (False, True)
  }
  assert dots[6, True] == dots[3, True]  # the program does not grow with depth
  assert dots[6, False] > dots[3, False] + 20
  assert dots[6, True] < dots[6, False] / 2
  assert count(lowered_forward_backward(6, False), "stablehlo.while") == 0
  compiled = lowered_forward_backward(6, True).compile().as_text()
  assert re.search(r"\bwhile\(", compiled)  # XLA keeps the loop
  compiled_dots = lambda scan: len(
    re.findall(r"\bdot\(", lowered_forward_backward(6, scan).compile().as_text())
  )
  unrolled = lowered_forward_backward(6, 6).compile().as_text()
  assert not re.search(r"\bwhile\(", unrolled)  # unrolled: no loop,
  assert compiled_dots(6) == compiled_dots(False) > 2 * compiled_dots(True)  # every layer's dots


@pytest.mark.slow
def test_minilm_stacked_matches_per_layer(minilm_dir):
  plain, stacked = both_layouts(minilm_dir, seed=3)
  assert stacked.params["encoder"]["layers"]["intermediate"]["kernel"].shape == (6, 384, 1536)
  sentences = (["A man is playing a guitar.", "Stocks fell sharply on Monday morning."],)
  encoded = stacked.tokenizer(*sentences, padding=True, return_tensors="np")
  ids, mask, types = (
    encoded[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids")
  )
  apply = lambda p, **kw: p.module.apply({"params": p.params}, ids, mask, types, **kw)
  np.testing.assert_allclose(apply(stacked), apply(plain), rtol=0, atol=ATOL)
  (_, hidden_a), (_, hidden_b) = (
    apply(plain, return_hidden=True),
    apply(stacked, return_hidden=True),
  )
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden_b)[real], np.asarray(hidden_a)[real], atol=ATOL)

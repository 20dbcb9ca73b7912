"""Loading variants, save_pretrained round trip through transformers, knobs, sharding."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import ad_checkpoint
from jax.sharding import Mesh, PartitionSpec

from pats_jax import models
from pats_jax.models import checkpoint_io, tiny

ATOL = 1e-5


def batch(vocab_size=128, seed=0):
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, vocab_size, (4, 12)).astype(np.int32)
  mask = np.ones_like(ids)
  mask[1, 7:] = 0
  mask[3, 4:] = 0
  ids[mask == 0] = 0
  types = np.zeros_like(ids)
  types[:, 6:] = 1
  return ids, mask, types * mask


def logits_of(pretrained, params=None, deterministic=True, rngs=None):
  """Logits of `batch()`."""
  ids, mask, types = batch()
  variables = {"params": pretrained.params if params is None else params}
  return np.asarray(
    pretrained.module.apply(variables, ids, mask, types, deterministic=deterministic, rngs=rngs)
  )


@pytest.fixture
def tiny_bert(tmp_path):
  return tiny.write_tiny_checkpoint(tmp_path / "bert", intermediate_size=48)


# --- round trip through transformers (PyTorch) ---------------------------------------


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_round_trip_through_transformers(tmp_path, model_type, num_labels):
  torch = pytest.importorskip("torch")
  from transformers import AutoModelForSequenceClassification

  source = tiny.write_tiny_checkpoint(tmp_path / "src", model_type=model_type, with_head=False)
  pretrained = models.load(source, num_labels=num_labels, seed=1)
  assert pretrained.newly_initialized  # the head is ours, so saving it matters
  tuned = jax.tree.map(lambda x: x + 0.01, pretrained.params)  # "after fine-tuning"
  out = models.save_pretrained(pretrained, tuned, tmp_path / "out")

  config = json.loads((out / "config.json").read_text())
  assert config["problem_type"] == (
    "regression" if num_labels == 1 else "single_label_classification"
  )
  reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
  expected_class = {
    "bert": "BertForSequenceClassification",
    "roberta": "RobertaForSequenceClassification",
  }[model_type]
  assert type(reloaded).__name__ == expected_class
  assert reloaded.config.num_labels == num_labels

  ids, mask, types = batch()
  if model_type == "roberta":
    ids[mask == 0] = 1  # RoBERTa's padding id
  inputs = {
    "input_ids": torch.tensor(ids, dtype=torch.long),
    "attention_mask": torch.tensor(mask, dtype=torch.long),
  }
  if model_type == "bert":
    inputs["token_type_ids"] = torch.tensor(types, dtype=torch.long)
  with torch.no_grad():
    ref = reloaded(**inputs).logits.numpy()
  ours = pretrained.module.apply({"params": tuned}, ids, mask, types)
  np.testing.assert_allclose(np.asarray(ours), ref, rtol=0, atol=ATOL)

  again = models.load(out, num_labels=num_labels)
  assert again.newly_initialized == [] and again.unused_tensors == []
  jax.tree.map(np.testing.assert_array_equal, again.params, tuned)


def test_save_keeps_label_names_and_dropout(tiny_bert, tmp_path):
  pretrained = models.load(tiny_bert, num_labels=2, hidden_dropout=0.0, attention_dropout=0.05)
  config = dataclasses.replace(pretrained.config, label_names=("negative", "positive"))
  named = dataclasses.replace(pretrained, config=config)
  out = models.save_pretrained(named, {"params": pretrained.params}, tmp_path / "out")
  config = json.loads((out / "config.json").read_text())
  assert config["id2label"] == {"0": "negative", "1": "positive"}
  assert config["hidden_dropout_prob"] == 0.0
  assert config["attention_probs_dropout_prob"] == 0.05
  assert models.load(out, num_labels=2).config.label_names == ("negative", "positive")


# --- checkpoint layouts ---------------------------------------------------------------


def test_bare_encoder_checkpoints_get_a_new_head(tmp_path):
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  bert = transformers.BertModel(
    transformers.BertConfig(
      vocab_size=50,
      hidden_size=16,
      num_hidden_layers=1,
      num_attention_heads=2,
      intermediate_size=20,
      max_position_embeddings=32,
    )
  )
  bert.save_pretrained(tmp_path / "bert")
  loaded = models.load(tmp_path / "bert", num_labels=2)
  assert loaded.newly_initialized == ["classifier.weight", "classifier.bias"]
  assert loaded.unused_tensors == []

  roberta = transformers.RobertaModel(
    transformers.RobertaConfig(
      vocab_size=50,
      hidden_size=16,
      num_hidden_layers=1,
      num_attention_heads=2,
      intermediate_size=20,
      max_position_embeddings=34,
    )
  )
  roberta.save_pretrained(tmp_path / "roberta")
  loaded = models.load(tmp_path / "roberta", num_labels=2)
  assert loaded.newly_initialized == [
    "classifier.dense.weight",
    "classifier.dense.bias",
    "classifier.out_proj.weight",
    "classifier.out_proj.bias",
  ]
  assert loaded.unused_tensors == ["pooler.dense.bias", "pooler.dense.weight"]


def test_pretraining_checkpoint_reports_unused_heads(tmp_path):
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("torch")
  model = transformers.BertForPreTraining(
    transformers.BertConfig(
      vocab_size=50,
      hidden_size=16,
      num_hidden_layers=1,
      num_attention_heads=2,
      intermediate_size=20,
      max_position_embeddings=32,
    )
  )
  model.save_pretrained(tmp_path)
  loaded = models.load(tmp_path, num_labels=3)
  assert loaded.newly_initialized == ["classifier.weight", "classifier.bias"]
  assert loaded.unused_tensors and all(n.startswith("cls.") for n in loaded.unused_tensors)
  np.testing.assert_array_equal(
    loaded.params["head"]["pooler"]["kernel"], model.bert.pooler.dense.weight.detach().numpy().T
  )


def test_new_head_is_seeded(tmp_path):
  source = tiny.write_tiny_checkpoint(tmp_path, with_head=False)
  head = lambda seed: models.load(source, num_labels=2, seed=seed).params["head"]
  a, b, c = head(0), head(0), head(1)
  np.testing.assert_array_equal(a["classifier"]["kernel"], b["classifier"]["kernel"])
  assert not np.allclose(a["classifier"]["kernel"], c["classifier"]["kernel"])
  np.testing.assert_array_equal(a["classifier"]["bias"], 0.0)
  np.testing.assert_allclose(np.std(a["classifier"]["kernel"]), 0.02, rtol=0.5)


def test_reinit_head_ignores_checkpoint_head(tiny_bert):
  loaded = models.load(tiny_bert, num_labels=2, reinit_head=True)
  assert loaded.newly_initialized == [
    "bert.pooler.dense.weight",
    "bert.pooler.dense.bias",
    "classifier.weight",
    "classifier.bias",
  ]
  assert loaded.unused_tensors == [
    "bert.pooler.dense.bias",
    "bert.pooler.dense.weight",
    "classifier.bias",
    "classifier.weight",
  ]


def test_pytorch_bin_matches_safetensors(tiny_bert, tmp_path):
  torch = pytest.importorskip("torch")
  tensors = checkpoint_io.read_tensors(tiny_bert / "model.safetensors")
  folder = tmp_path / "bin"
  folder.mkdir()
  (folder / "config.json").write_text((tiny_bert / "config.json").read_text())
  torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, folder / "pytorch_model.bin")
  from_bin = models.load(folder, num_labels=2).params
  from_safetensors = models.load(tiny_bert, num_labels=2).params
  jax.tree.map(np.testing.assert_array_equal, from_bin, from_safetensors)


def test_pytorch_bin_without_torch_says_what_to_do(tiny_bert, tmp_path, monkeypatch):
  folder = tmp_path / "bin"
  folder.mkdir()
  (folder / "config.json").write_text((tiny_bert / "config.json").read_text())
  (folder / "pytorch_model.bin").write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match=r"pytorch_model\.bin.*pip install torch.*safetensors"):
    models.load(folder, num_labels=2)


def test_layernorm_gamma_beta_and_bfloat16_checkpoints(tiny_bert, tmp_path):
  import ml_dtypes

  tensors = checkpoint_io.read_tensors(tiny_bert / "model.safetensors")
  renamed = {
    k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
      "LayerNorm.bias", "LayerNorm.beta"
    ): v.astype(ml_dtypes.bfloat16)
    for k, v in tensors.items()
  }
  folder = tmp_path / "old"
  folder.mkdir()
  (folder / "config.json").write_text((tiny_bert / "config.json").read_text())
  checkpoint_io.write_safetensors(renamed, folder / "model.safetensors")
  old = models.load(folder, num_labels=2)
  new = models.load(tiny_bert, num_labels=2)
  assert old.unused_tensors == [] and old.newly_initialized == []
  expected = jax.tree.map(lambda x: np.asarray(x.astype(jnp.bfloat16), np.float32), new.params)
  jax.tree.map(np.testing.assert_array_equal, old.params, expected)


def test_offline_hub_id_error_names_files_and_cache(tmp_path, monkeypatch):
  from huggingface_hub import constants

  monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
  with pytest.raises(FileNotFoundError) as info:
    models.load("no-such-org/no-such-model", num_labels=2, cache_dir=str(tmp_path / "hf"))
  message = str(info.value)
  assert "config.json" in message and "model.safetensors" in message
  assert str(tmp_path / "hf") in message and "no-such-org/no-such-model" in message


# --- knobs ----------------------------------------------------------------------------


def test_bfloat16_compute_keeps_float32_params_and_logits(tiny_bert):
  fp32 = models.load(tiny_bert, num_labels=2)
  bf16 = models.load(tiny_bert, num_labels=2, dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(bf16.params))
  out = logits_of(bf16)
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, logits_of(fp32), atol=5e-2)
  assert not np.array_equal(out, logits_of(fp32))


def test_bfloat16_params(tiny_bert):
  loaded = models.load(tiny_bert, num_labels=2, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(loaded.params))
  assert logits_of(loaded).dtype == np.float32


def dropout_loss(module, params):
  ids, mask, types = batch()
  return jnp.sum(
    module.apply(
      {"params": params}, ids, mask, types, deterministic=False, rngs={"dropout": jax.random.key(0)}
    )
    ** 2
  )


@pytest.mark.slow
@pytest.mark.parametrize("remat", [True, "dots", "dots_no_batch"])
def test_remat_gives_same_values_and_gradients(tiny_bert, remat):
  plain = models.load(tiny_bert, num_labels=2)
  rematerialised = models.load(tiny_bert, num_labels=2, remat=remat)
  grad = lambda loaded: jax.jit(jax.value_and_grad(functools.partial(dropout_loss, loaded.module)))(
    loaded.params
  )
  value_a, grad_a = grad(plain)
  value_b, grad_b = grad(rematerialised)
  np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7), grad_a, grad_b)


@pytest.mark.parametrize("scan_layers", [False, True])
def test_remat_policies_keep_fewer_activations_for_the_backward_pass(
  tiny_bert, scan_layers, capsys
):
  saved = {}
  for remat in (False, "dots", "dots_no_batch", True):
    loaded = models.load(tiny_bert, num_labels=2, remat=remat, scan_layers=scan_layers)
    capsys.readouterr()
    ad_checkpoint.print_saved_residuals(
      functools.partial(dropout_loss, loaded.module), loaded.params
    )
    # One line per residual, starting with its type, e.g. "bf16[4,12,48] from ...".
    shapes = re.findall(r"^\w+\[([\d,]*)\]", capsys.readouterr().out, flags=re.MULTILINE)
    saved[remat] = sum(math.prod(int(n) for n in dims.split(",") if n) for dims in shapes)
  assert saved[False] > saved["dots"] > saved["dots_no_batch"] > saved[True]


def test_dropout_uses_dropout_rng(tiny_bert):
  loaded = models.load(tiny_bert, num_labels=2)
  train = lambda seed: logits_of(
    loaded, deterministic=False, rngs={"dropout": jax.random.key(seed)}
  )
  np.testing.assert_array_equal(train(0), train(0))
  assert not np.allclose(train(0), train(1))
  assert not np.allclose(train(0), logits_of(loaded))
  only_attention = models.load(tiny_bert, num_labels=2, hidden_dropout=0.0)
  assert not np.allclose(
    logits_of(only_attention, deterministic=False, rngs={"dropout": jax.random.key(0)}),
    logits_of(loaded),
  )


def test_inputs_without_token_types_or_mask(tiny_bert):
  loaded = models.load(tiny_bert, num_labels=2)
  ids = batch()[0]
  full = np.ones_like(ids)
  apply = lambda *args: np.asarray(loaded.module.apply({"params": loaded.params}, *args))
  np.testing.assert_allclose(apply(ids), apply(ids, full, np.zeros_like(ids)), atol=1e-6)


# --- sharding -------------------------------------------------------------------------


def test_logical_axes_cover_every_parameter(tiny_bert):
  loaded = models.load(tiny_bert, num_labels=2)
  specs = models.logical_axes(loaded)
  is_spec = lambda x: isinstance(x, PartitionSpec)
  assert jax.tree.structure(specs, is_leaf=is_spec) == jax.tree.structure(loaded.params)
  flat = jax.tree.leaves(
    jax.tree.map(lambda s, p: (s, p.ndim), specs, loaded.params, is_leaf=is_spec),
    is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2 and is_spec(x[0]),
  )
  assert all(len(spec) == ndim and all(spec) for spec, ndim in flat)
  layer = specs["encoder"]["layer_0"]
  assert layer["attention"]["query"]["kernel"] == PartitionSpec("embed", "heads", "kv")
  assert layer["attention"]["output"]["kernel"] == PartitionSpec("heads", "kv", "embed")
  assert layer["intermediate"]["kernel"] == PartitionSpec("embed", "mlp")
  assert layer["output"]["kernel"] == PartitionSpec("mlp", "embed")
  assert layer["output_norm"]["scale"] == PartitionSpec("embed")
  embeddings = specs["encoder"]["embeddings"]
  assert embeddings["word_embeddings"]["embedding"] == PartitionSpec("vocab", "embed")


@pytest.mark.parametrize(("fsdp", "tensor"), [(False, False), (True, False), (True, True)])
def test_sharded_apply_matches_single_device(tiny_bert, fsdp, tensor):
  loaded = models.load(tiny_bert, num_labels=2)
  devices = np.array(jax.devices()[:8]).reshape(2, 2, 2)
  mesh = Mesh(devices, ("data", "fsdp", "tensor"))
  rules = models.axis_rules(fsdp=fsdp, tensor=tensor)
  shardings = nn.logical_to_mesh_sharding(models.logical_axes(loaded), mesh, rules)
  params = jax.device_put(loaded.params, shardings)
  query = params["encoder"]["layer_0"]["attention"]["query"]["kernel"]
  assert query.sharding.spec == PartitionSpec(
    "fsdp" if fsdp else None, "tensor" if tensor else None, None
  )
  batch_sharding = nn.logical_to_mesh_sharding(PartitionSpec("batch", None), mesh, rules)
  ids, mask, types = (jax.device_put(x, batch_sharding) for x in batch())
  apply = jax.jit(lambda p, i, m, t: loaded.module.apply({"params": p}, i, m, t))
  np.testing.assert_allclose(
    np.asarray(apply(params, ids, mask, types)), logits_of(loaded), rtol=1e-5, atol=1e-6
  )

"""ELECTRA against transformers' `ElectraForSequenceClassification` (float32, 1e-4 abs).

Small random configs, with embeddings narrower than the hidden width (the `embeddings_project`
of ELECTRA-small) and as wide; every torch parameter is drawn at random with a fixed seed,
saved with `save_pretrained` and loaded with ours. Hidden states are compared on real tokens.
"""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from pats_jax import models
from pats_jax.models import convert, tiny

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ATOL = 1e-4
VOCAB = 99


def torch_electra(num_labels: int, embedding_size: int, seed: int = 0, model_class=None, **kw):
  """A small random ELECTRA (`ElectraForSequenceClassification` by default)."""
  config = transformers.ElectraConfig(
    vocab_size=VOCAB,
    embedding_size=embedding_size,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    num_labels=num_labels,
    **kw,
  )
  torch.manual_seed(seed)
  model_class = model_class or transformers.ElectraForSequenceClassification
  model = model_class(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = 0.1 * torch.randn_like(param)
      param.copy_(1.0 + noise if "LayerNorm.weight" in name else noise)
  return model


def pair_batch(seed: int = 0):
  """Sentence pairs of different lengths, right-padded: ids, mask, token types."""
  rng = np.random.default_rng(seed)
  lengths = [(5, 7), (3, 2), (9, 4), (1, 1)]
  width = max(a + b for a, b in lengths) + 5
  ids = np.zeros((len(lengths), width), np.int32)
  types, mask = np.zeros_like(ids), np.zeros_like(ids)
  for row, (a, b) in enumerate(lengths):
    ids[row, : a + b + 3] = rng.integers(3, VOCAB, a + b + 3)
    mask[row, : a + b + 3] = 1
    types[row, a + 2 : a + b + 3] = 1
  return ids, mask, types


def torch_inputs(ids, mask, types):
  return {
    "input_ids": torch.tensor(ids).long(),
    "attention_mask": torch.tensor(mask).long(),
    "token_type_ids": torch.tensor(types).long(),
  }


@pytest.mark.parametrize("embedding_size", [16, 32])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_logits_and_hidden_states_match_pytorch(tmp_path, embedding_size, num_labels):
  model = torch_electra(num_labels, embedding_size)
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=num_labels, attention="xla")
  assert pretrained.newly_initialized == [] and pretrained.unused_tensors == []
  assert ("embeddings_project" in pretrained.params["encoder"]) == (embedding_size != 32)
  ids, mask, types = pair_batch()
  with torch.no_grad():
    expected = model(**torch_inputs(ids, mask, types), output_hidden_states=True)
  logits, hidden = pretrained.module.apply(
    {"params": pretrained.params}, ids, mask, types, return_hidden=True
  )
  np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=0, atol=ATOL)
  real = mask.astype(bool)
  np.testing.assert_allclose(
    np.asarray(hidden)[real], expected.hidden_states[-1].numpy()[real], rtol=0, atol=ATOL
  )
  first_token_only = pretrained.module.apply({"params": pretrained.params}, ids, mask, types)
  np.testing.assert_allclose(first_token_only, expected.logits.numpy(), rtol=0, atol=ATOL)
  swapped = pretrained.module.apply({"params": pretrained.params}, ids, mask, 1 - types)
  assert np.abs(swapped - logits).max() > 1e-3  # token types matter


@pytest.mark.parametrize("embedding_size", [16, 32])
def test_gradients_match_pytorch(tmp_path, embedding_size):
  model = torch_electra(2, embedding_size, seed=1)
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  ids, mask, types = pair_batch(seed=1)
  labels = np.array([0, 1, 1, 0])
  model.zero_grad()
  out = model(**torch_inputs(ids, mask, types), labels=torch.tensor(labels))
  out.loss.backward()
  expected = {name: p.grad.numpy() for name, p in model.named_parameters()}

  def loss(params):
    logits = pretrained.module.apply({"params": params}, ids, mask, types)
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=1))

  grads = convert.to_hf(jax.grad(loss)(pretrained.params), pretrained.config)
  assert sorted(grads) == sorted(expected)
  for name, grad in grads.items():
    np.testing.assert_allclose(grad, expected[name], rtol=1e-3, atol=1e-6, err_msg=name)
  assert max(np.abs(g).max() for g in grads.values()) > 1e-3


def test_save_pretrained_loads_in_pytorch_with_the_same_logits(tmp_path):
  model = torch_electra(3, 16, seed=2)
  model.save_pretrained(tmp_path / "src")
  pretrained = models.load(tmp_path / "src", num_labels=3, scan_layers=True)
  tuned = jax.tree.map(lambda x: x * 1.05, pretrained.params)
  out = models.save_pretrained(pretrained, tuned, tmp_path / "out")
  config = json.loads((out / "config.json").read_text())
  assert config["architectures"] == ["ElectraForSequenceClassification"]
  assert config["embedding_size"] == 16
  reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  assert isinstance(reloaded, transformers.ElectraForSequenceClassification)
  ids, mask, types = pair_batch(seed=2)
  with torch.no_grad():
    expected = reloaded(**torch_inputs(ids, mask, types)).logits.numpy()
  ours = pretrained.module.apply({"params": tuned}, ids, mask, types)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)
  assert (
    np.abs(ours - pretrained.module.apply({"params": pretrained.params}, ids, mask, types)).max()
    > 1e-3
  )


def test_discriminator_and_bare_encoder_checkpoints_get_a_new_head(tmp_path):
  discriminator = torch_electra(2, 16, model_class=transformers.ElectraForPreTraining)
  discriminator.save_pretrained(tmp_path / "discriminator")
  loaded = models.load(tmp_path / "discriminator", num_labels=2, seed=3)
  head = ["classifier.dense.weight", "classifier.dense.bias"]
  head += ["classifier.out_proj.weight", "classifier.out_proj.bias"]
  assert loaded.newly_initialized == head
  assert loaded.unused_tensors and all(
    name.startswith("discriminator_predictions.") for name in loaded.unused_tensors
  )
  np.testing.assert_array_equal(
    loaded.params["encoder"]["embeddings_project"]["kernel"],
    discriminator.electra.embeddings_project.weight.detach().numpy().T,
  )
  bare = torch_electra(2, 16, model_class=transformers.ElectraModel)
  bare.save_pretrained(tmp_path / "bare")
  loaded = models.load(tmp_path / "bare", num_labels=2)
  assert loaded.newly_initialized == head and loaded.unused_tensors == []


def test_sharded_over_fsdp_and_tensor_axes(tmp_path):
  folder = tiny.write_tiny_checkpoint(
    tmp_path, model_type="electra", intermediate_size=48, tokenizer=False
  )
  pretrained = models.load(folder, num_labels=2)
  specs = models.logical_axes(pretrained)
  assert specs["encoder"]["embeddings_project"]["kernel"] == PartitionSpec("embed_in", "embed")
  assert specs["encoder"]["embeddings"]["word_embeddings"]["embedding"] == PartitionSpec(
    "vocab", "embed"
  )
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(2, 2, 2), ("data", "fsdp", "tensor"))
  rules = models.axis_rules(fsdp=True, tensor=True)
  params = jax.device_put(pretrained.params, nn.logical_to_mesh_sharding(specs, mesh, rules))
  query = params["encoder"]["layer_0"]["attention"]["query"]["kernel"]
  assert query.sharding.spec == PartitionSpec("fsdp", "tensor", None)
  ids, mask, types = pair_batch()
  ids = ids % pretrained.config.vocab_size
  apply = jax.jit(lambda p: pretrained.module.apply({"params": p}, ids, mask, types))
  single = pretrained.module.apply({"params": pretrained.params}, ids, mask, types)
  np.testing.assert_allclose(apply(params), single, rtol=1e-5, atol=1e-6)


def test_config_fields_are_honoured_or_refused(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, model_type="electra", tokenizer=False)
  written = json.loads((folder / "config.json").read_text())
  assert (written["type_vocab_size"], written["pad_token_id"]) == (2, 0)  # BERT's, not RoBERTa's
  config = models.ModelConfig.from_hf_dict(
    {**written, "summary_type": "first", "summary_use_proj": True}, num_labels=2
  )
  assert config.embedding_size == 16 and config.to_hf_dict()["summary_use_proj"] is True
  defaults = models.ModelConfig.from_hf_dict({"model_type": "electra"}, num_labels=2)
  assert (defaults.embedding_size, defaults.hidden_size, defaults.num_attention_heads) == (
    128,
    256,
    4,
  )
  refused = {
    "position_embedding_type": "relative_key",
    "is_decoder": True,
    "add_cross_attention": True,
    "pruned_heads": {"0": [1]},
    "hidden_act": "mish",
  }
  for key, value in refused.items():
    with pytest.raises(ValueError, match=rf"config\.json: {key}.*not supported"):
      models.ModelConfig.from_hf_dict({**written, key: value}, num_labels=2)
  with pytest.raises(ValueError, match="embedding_size must be >= 1"):
    models.ModelConfig.from_hf_dict({**written, "embedding_size": 0}, num_labels=2)

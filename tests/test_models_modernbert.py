"""Parity of our Flax ModernBERT with transformers' `ModernBertForSequenceClassification`.

Small random models (every torch parameter drawn at random with a fixed seed, norm weights
around 1) saved with `save_pretrained`, loaded with ours, and compared in float32 with the
eager attention path of transformers on right-padded batches: logits, last hidden states (on
real tokens; padding positions feed nothing), gradients of every tensor, and the checkpoint
`save_pretrained` writes. The batches are longer than the local window, so global and local
layers differ.

  python -m pytest -p no:xdist -q tests/test_models_modernbert.py
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pats_jax import models
from pats_jax.models import convert, modernbert

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ATOL = 1e-5
PAD = 1
VOCAB = 99
BIASES = ("norm_bias", "attention_bias", "mlp_bias", "classifier_bias")


def torch_model(num_labels: int = 3, seed: int = 0, **overrides):
  """A random `ModernBertForSequenceClassification` (eager attention), 4 layers, window ±2."""
  kwargs = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=24,
    global_attn_every_n_layers=3,
    local_attention=4,
    global_rope_theta=100.0,
    local_rope_theta=10.0,
    pad_token_id=PAD,
    bos_token_id=0,
    eos_token_id=2,
    cls_token_id=0,
    sep_token_id=2,
    num_labels=num_labels,
    attn_implementation="eager",
  )
  kwargs.update(overrides)
  config = transformers.ModernBertConfig(**kwargs)
  torch.manual_seed(seed)
  model = transformers.ModernBertForSequenceClassification(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = 0.1 * torch.randn_like(param)
      param.copy_(1.0 + noise if "norm.weight" in name else noise)
  return model


def batch(seed: int = 0, width: int = 14):
  """Right-padded ids and mask of lengths 14, 9, 3 and 1 (padding: the pad id)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(3, VOCAB, (4, width)).astype(np.int32)
  mask = np.zeros_like(ids)
  for row, length in enumerate((width, 9, 3, 1)):
    mask[row, :length] = 1
  ids[mask == 0] = PAD
  return ids, mask


def torch_outputs(model, ids, mask):
  """(logits, last hidden state after the final norm) of the torch model."""
  inputs = dict(
    input_ids=torch.tensor(ids, dtype=torch.long),
    attention_mask=torch.tensor(mask, dtype=torch.long),
  )
  with torch.no_grad():
    logits = model(**inputs).logits.numpy()
    hidden = model.model(**inputs).last_hidden_state.numpy()
  return logits, hidden


def apply(pretrained, ids, mask, **kwargs):
  return pretrained.module.apply({"params": pretrained.params}, ids, mask, None, **kwargs)


def assert_parity(pretrained, model, ids, mask):
  logits, hidden = apply(pretrained, ids, mask, return_hidden=True)
  ref_logits, ref_hidden = torch_outputs(model, ids, mask)
  assert logits.dtype == jnp.float32 and logits.shape == ref_logits.shape
  np.testing.assert_allclose(np.asarray(logits), ref_logits, rtol=0, atol=ATOL)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[real], ref_hidden[real], rtol=0, atol=ATOL)
  # Without return_hidden, "cls" pooling computes the last layer for the first token only.
  np.testing.assert_allclose(np.asarray(apply(pretrained, ids, mask)), ref_logits, atol=ATOL)


@pytest.mark.parametrize(
  ("pooling", "num_labels", "biases"),
  [("cls", 3, False), ("mean", 1, True), ("mean", 3, False), ("cls", 1, True)],
)
def test_parity_random_weights(tmp_path, pooling, num_labels, biases):
  model = torch_model(num_labels, classifier_pooling=pooling, **dict.fromkeys(BIASES, biases))
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=num_labels, attention="xla")
  assert pretrained.newly_initialized == [] and pretrained.unused_tensors == []
  assert pretrained.config.layer_types == (
    "full_attention",
    *["sliding_attention"] * 2,
    "full_attention",
  )
  assert_parity(pretrained, model, *batch())


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_stacked_layers_match_torch_for_any_layer_pattern(tmp_path, pooling):
  """One scanned body serves any mix of layer kinds, a local first layer included."""
  kinds = ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"]
  model = torch_model(2, seed=1, layer_types=kinds, classifier_pooling=pooling, norm_bias=True)
  model.save_pretrained(tmp_path)
  ids, mask = batch(seed=1)
  for options in ({}, {"scan_layers": True}, {"scan_layers": True, "remat": True}):
    pretrained = models.load(tmp_path, num_labels=2, attention="xla", **options)
    assert pretrained.config.layer_types == tuple(kinds)
    assert_parity(pretrained, model, ids, mask)


def test_old_config_spellings_give_the_same_model(tmp_path):
  """Hub checkpoints were saved by older transformers: a period and two thetas, no lists."""
  model = torch_model(2, seed=2, global_attn_every_n_layers=2)
  model.save_pretrained(tmp_path)
  hf = json.loads((tmp_path / "config.json").read_text())
  assert hf["layer_types"] == ["full_attention", "sliding_attention"] * 2
  assert hf["rope_parameters"]["sliding_attention"]["rope_theta"] == 10.0
  new = models.load(tmp_path, num_labels=2).config
  for key in ("layer_types", "rope_parameters"):
    del hf[key]
  hf.update(global_attn_every_n_layers=2, global_rope_theta=100.0, local_rope_theta=10.0)
  (tmp_path / "config.json").write_text(json.dumps(hf))
  old = models.load(tmp_path, num_labels=2, attention="xla")
  for key in ("layer_types", "global_rope_theta", "local_rope_theta"):
    assert getattr(old.config, key) == getattr(new, key), key
  assert_parity(old, model, *batch(seed=2))


def _with_config(folder, **changes):
  hf = json.loads((folder / "config.json").read_text())
  hf.update(changes)
  (folder / "config.json").write_text(json.dumps(hf))
  return models.load(folder, num_labels=2, attention="xla")


@pytest.mark.parametrize(
  "changes",
  [
    {"local_attention": 64},
    {"layer_types": ["full_attention"] * 4},
    {"rope_parameters": {"full_attention": {"rope_theta": 10.0}, "sliding_attention": {}}},
    {"rope_parameters": {"full_attention": {}, "sliding_attention": {"rope_theta": 100.0}}},
  ],
)
def test_window_kinds_and_thetas_change_the_logits(tmp_path, changes):
  """Guards the parity tests: the batch is long enough that each setting matters."""
  model = torch_model(2, seed=3)
  model.save_pretrained(tmp_path)
  ids, mask = batch(seed=3)
  reference = np.asarray(apply(models.load(tmp_path, num_labels=2), ids, mask))
  changed = np.asarray(apply(_with_config(tmp_path, **changes), ids, mask))
  assert np.abs(changed - reference).max() > 1e-3


@pytest.mark.parametrize("scan_layers", [False, True])
def test_gradients_match_torch_autograd(tmp_path, scan_layers):
  model = torch_model(3, seed=4, classifier_pooling="mean", **dict.fromkeys(BIASES, True))
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=3, attention="xla", scan_layers=scan_layers)
  ids, mask = batch(seed=4)
  labels = np.array([0, 2, 1, 2])

  def loss(params):
    logits = pretrained.module.apply({"params": params}, ids, mask, None)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  value, grads = jax.value_and_grad(loss)(pretrained.params)
  out = model(
    input_ids=torch.tensor(ids).long(),
    attention_mask=torch.tensor(mask).long(),
    labels=torch.tensor(labels).long(),
  )
  out.loss.backward()
  np.testing.assert_allclose(float(value), out.loss.item(), rtol=0, atol=ATOL)
  ours = convert.to_hf(grads, pretrained.config)
  theirs = {name: p.grad.numpy() for name, p in model.named_parameters()}
  assert set(ours) == set(theirs)
  for name, grad in theirs.items():
    scale = max(1.0, float(np.abs(grad).max()))
    np.testing.assert_allclose(ours[name], grad, rtol=0, atol=ATOL * scale, err_msg=name)


def test_first_layer_attention_norm_is_not_applied(tmp_path):
  """Layer 0's attention norm (absent in ModernBERT) is ones, never saved, without effect."""
  model = torch_model(2, seed=5, norm_bias=True)
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  unused = pretrained.params["encoder"]["layer_0"]["attention_norm"]
  np.testing.assert_array_equal(unused["scale"], 1.0)
  np.testing.assert_array_equal(unused["bias"], 0.0)
  assert not any(
    name.startswith("model.layers.0.attn_norm")
    for name in convert.to_hf(pretrained.params, pretrained.config)
  )
  ids, mask = batch(seed=5)
  moved = jax.tree.map(lambda x: x, pretrained.params)
  moved["encoder"]["layer_0"]["attention_norm"] = jax.tree.map(lambda x: x + 0.5, unused)
  logits = apply(pretrained, ids, mask)
  np.testing.assert_array_equal(pretrained.module.apply({"params": moved}, ids, mask, None), logits)
  grads = jax.grad(lambda p: jnp.sum(pretrained.module.apply({"params": p}, ids, mask, None)))(
    pretrained.params
  )
  for leaf in jax.tree.leaves(grads["encoder"]["layer_0"]["attention_norm"]):
    np.testing.assert_array_equal(leaf, 0.0)
  assert np.abs(grads["encoder"]["layer_1"]["attention_norm"]["scale"]).max() > 0


def test_masked_lm_and_bare_encoder_checkpoints(tmp_path):
  """The hub checkpoints are `ModernBertForMaskedLM`: its prediction head is reused as in
  transformers, the classifier is new; a bare `ModernBertModel` gets a whole new head."""
  classifier = torch_model(2, seed=6)
  config = classifier.config
  masked_lm = transformers.ModernBertForMaskedLM(config).eval()
  bare = transformers.ModernBertModel(config).eval()
  with torch.no_grad():
    masked_lm.model.load_state_dict(classifier.model.state_dict())
    masked_lm.head.load_state_dict(classifier.head.state_dict())
    bare.load_state_dict(classifier.model.state_dict())
  masked_lm.save_pretrained(tmp_path / "mlm")
  bare.save_pretrained(tmp_path / "bare")
  ids, mask = batch(seed=6)
  _, ref_hidden = torch_outputs(classifier, ids, mask)
  real = mask.astype(bool)

  mlm = models.load(tmp_path / "mlm", num_labels=2, attention="xla")
  assert mlm.newly_initialized == ["classifier.weight", "classifier.bias"]
  assert mlm.unused_tensors == ["decoder.bias"]
  saved = convert.to_hf(mlm.params, mlm.config)
  for name in ("head.dense.weight", "head.norm.weight"):
    np.testing.assert_array_equal(saved[name], classifier.state_dict()[name].numpy())
  encoder = models.load(tmp_path / "bare", num_labels=2, attention="xla")
  assert encoder.newly_initialized == [
    "head.dense.weight",
    "head.norm.weight",
    "classifier.weight",
    "classifier.bias",
  ]
  for pretrained in (mlm, encoder):
    _, hidden = apply(pretrained, ids, mask, return_hidden=True)
    np.testing.assert_allclose(np.asarray(hidden)[real], ref_hidden[real], rtol=0, atol=ATOL)


def test_save_pretrained_round_trip_from_stacked_layers(tmp_path):
  model = torch_model(3, seed=7, classifier_pooling="mean", **dict.fromkeys(BIASES, True))
  model.save_pretrained(tmp_path / "in")
  pretrained = models.load(tmp_path / "in", num_labels=3, scan_layers=True)
  tuned = jax.tree.map(lambda x: x + 0.01, pretrained.params)
  out = models.save_pretrained(pretrained, tuned, tmp_path / "out")
  reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(
    out, attn_implementation="eager"
  ).eval()
  assert type(reloaded).__name__ == "ModernBertForSequenceClassification"
  ids, mask = batch(seed=7)
  ours = pretrained.module.apply({"params": tuned}, ids, mask, None)
  np.testing.assert_allclose(np.asarray(ours), torch_outputs(reloaded, ids, mask)[0], atol=ATOL)


@pytest.mark.parametrize(
  ("changes", "field"),
  [
    ({"classifier_pooling": "max"}, "classifier_pooling"),
    ({"layer_types": ["full_attention"] * 3}, "layer_types"),
    ({"layer_types": ["chunked_attention"] * 4}, "layer_types"),
    ({"global_attn_every_n_layers": 0, "layer_types": None}, "global_attn_every_n_layers"),
    (
      {"rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 2.0}}},
      "rope_parameters",
    ),
    ({"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}}, "rope_scaling"),
    ({"hidden_activation": "gelu_erf_maybe"}, "hidden_activation"),
    ({"head_dim": 4}, "head_dim"),
  ],
)
def test_unsupported_config_is_refused_naming_the_field(changes, field):
  hf = modernbert.tiny_config(num_hidden_layers=4)
  hf.update(changes)
  with pytest.raises(ValueError, match=field):
    models.ModelConfig.from_hf_dict(hf, num_labels=2)


def test_cudnn_path_receives_the_local_window(tmp_path, monkeypatch):
  """With attention="cudnn" each full-length layer asks cuDNN with the padding as key lengths
  and the window as a mask (cuDNN's own window is one-sided). Recorded here and computed by
  XLA (no cuDNN on the CPU): the logits equal the XLA path's."""
  asked = []
  xla_attention = jax.nn.dot_product_attention

  def recording(query, key, value, *args, implementation=None, key_value_seq_lengths=None, **kw):
    asked.append((query.shape[1], implementation, kw.get("mask") is not None))
    if key_value_seq_lengths is not None:  # cuDNN's padding form, ANDed with its mask for XLA.
      real = jnp.arange(key.shape[1])[None, :] < key_value_seq_lengths[:, None]
      kw["mask"] = jnp.logical_and(real[:, None, None, :], kw["mask"])
    return xla_attention(query, key, value, *args, implementation="xla", **kw)

  model = torch_model(2, seed=8, classifier_pooling="cls")
  model.save_pretrained(tmp_path)
  ids, mask = batch(seed=8)
  reference = apply(models.load(tmp_path, num_labels=2, attention="xla"), ids, mask)
  cudnn = models.load(tmp_path, num_labels=2, attention="cudnn", scan_layers=True)
  monkeypatch.setattr(jax.nn, "dot_product_attention", recording)
  logits = apply(cudnn, ids, mask)
  # The scanned layers share one body; the last layer's 1-token query goes through XLA.
  assert set(asked) == {(ids.shape[1], "cudnn", True), (1, "xla", True)}
  np.testing.assert_allclose(np.asarray(logits), np.asarray(reference), rtol=0, atol=ATOL)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN flash attention needs a GPU")
def test_cudnn_matches_xla_on_a_gpu(tmp_path):
  model = torch_model(2, seed=9, hidden_size=64, num_attention_heads=2, local_attention=8)
  model.save_pretrained(tmp_path)
  ids, mask = batch(seed=9, width=32)
  loaded = {
    impl: models.load(tmp_path, num_labels=2, dtype=jnp.bfloat16, attention=impl)
    for impl in ("cudnn", "xla")
  }
  hidden = {
    impl: np.asarray(apply(p, ids, mask, return_hidden=True)[1], np.float32)
    for impl, p in loaded.items()
  }
  real = mask.astype(bool)
  np.testing.assert_allclose(hidden["cudnn"][real], hidden["xla"][real], rtol=0, atol=5e-2)

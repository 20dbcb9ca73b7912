"""Parity of our Flax BERT/RoBERTa with transformers' PyTorch classes (fp32, 1e-5 abs).

Small random configs; every torch parameter (LayerNorm and biases included) is drawn
at random with a fixed seed, saved with `save_pretrained`, and loaded with ours.
Hidden states are compared on real (non-padding) tokens: outputs at padding positions
are not used by anything and differ from float64 by more than fp32 noise in torch too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pats_jax import models

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ATOL = 1e-5


def tiny_torch_model(model_type: str, num_labels: int, seed: int = 0, **overrides):
  """A small random `<Type>ForSequenceClassification` with all parameters random."""
  pad = 0 if model_type == "bert" else 1
  kwargs = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40 + pad + 1,
    type_vocab_size=2 if model_type == "bert" else 1,
    pad_token_id=pad,
    num_labels=num_labels,
    layer_norm_eps=1e-12 if model_type == "bert" else 1e-5,
  )
  kwargs.update(overrides)
  config = transformers.AutoConfig.for_model(model_type, **kwargs)
  torch.manual_seed(seed)
  model = transformers.AutoModelForSequenceClassification.from_config(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = 0.1 * torch.randn_like(param)
      param.copy_(1.0 + noise if "LayerNorm.weight" in name else noise)
  return model


def pair_batch(model_type: str, vocab_size: int, seed: int = 0):
  """Sentence pairs of different lengths, right-padded: ids, mask, token types."""
  rng = np.random.default_rng(seed)
  pad = 0 if model_type == "bert" else 1
  lengths = [(5, 7), (3, 2), (9, 4), (1, 1)]
  width = max(a + b for a, b in lengths) + 3
  ids = np.full((len(lengths), width), pad, np.int32)
  types = np.zeros_like(ids)
  mask = np.zeros_like(ids)
  for row, (a, b) in enumerate(lengths):
    tokens = rng.integers(3, vocab_size, a + b + 3)  # never the pad id
    ids[row, : a + b + 3] = tokens
    mask[row, : a + b + 3] = 1
    if model_type == "bert":
      types[row, a + 2 : a + b + 3] = 1
  return ids, mask, types


def torch_outputs(model, ids, mask, types, model_type):
  """(logits, last hidden state) of the torch model."""
  inputs = dict(
    input_ids=torch.tensor(ids, dtype=torch.long),
    attention_mask=torch.tensor(mask, dtype=torch.long),
  )
  if model_type == "bert":
    inputs["token_type_ids"] = torch.tensor(types, dtype=torch.long)
  with torch.no_grad():
    out = model(**inputs, output_hidden_states=True)
  return out.logits.numpy(), out.hidden_states[-1].numpy()


def assert_parity(pretrained, torch_model, model_type, ids, mask, types):
  logits, hidden = pretrained.module.apply(
    {"params": pretrained.params},
    jnp.asarray(ids),
    jnp.asarray(mask),
    jnp.asarray(types),
    deterministic=True,
    return_hidden=True,
  )
  ref_logits, ref_hidden = torch_outputs(torch_model, ids, mask, types, model_type)
  assert logits.dtype == jnp.float32
  assert logits.shape == ref_logits.shape
  np.testing.assert_allclose(np.asarray(logits), ref_logits, rtol=0, atol=ATOL)
  real = mask.astype(bool)
  np.testing.assert_allclose(np.asarray(hidden)[real], ref_hidden[real], rtol=0, atol=ATOL)
  # Without return_hidden the last layer computes the first token only: same logits.
  first_only = pretrained.module.apply(
    {"params": pretrained.params}, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(types)
  )
  np.testing.assert_allclose(np.asarray(first_only), ref_logits, rtol=0, atol=ATOL)


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
@pytest.mark.parametrize("num_labels", [1, 3])
def test_parity_random_weights(tmp_path, model_type, num_labels):
  torch_model = tiny_torch_model(model_type, num_labels)
  torch_model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=num_labels, attention="xla")
  assert pretrained.newly_initialized == []
  assert pretrained.unused_tensors == []
  ids, mask, types = pair_batch(model_type, 99)
  assert_parity(pretrained, torch_model, model_type, ids, mask, types)


@pytest.mark.parametrize("hidden_act", ["gelu_new", "relu"])
def test_parity_activations(tmp_path, hidden_act):
  torch_model = tiny_torch_model("bert", 2, seed=1, hidden_act=hidden_act)
  torch_model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  assert pretrained.config.hidden_act == hidden_act
  ids, mask, types = pair_batch("bert", 99, seed=1)
  assert_parity(pretrained, torch_model, "bert", ids, mask, types)


def test_parity_token_types_matter(tmp_path):
  """Guards the pair test: swapping token types must change BERT's output."""
  torch_model = tiny_torch_model("bert", 2)
  torch_model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  ids, mask, types = pair_batch("bert", 99)
  apply = lambda t: np.asarray(pretrained.module.apply({"params": pretrained.params}, ids, mask, t))
  assert np.abs(apply(types) - apply(np.zeros_like(types))).max() > 1e-3


def test_roberta_position_offset_and_padding_invariance(tmp_path):
  """Extra right padding must not change RoBERTa's logits (positions start at pad + 1)."""
  torch_model = tiny_torch_model("roberta", 2)
  torch_model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  ids, mask, types = pair_batch("roberta", 99)
  padded = lambda x, v: np.pad(x, ((0, 0), (0, 6)), constant_values=v)
  apply = lambda i, m: np.asarray(pretrained.module.apply({"params": pretrained.params}, i, m))
  np.testing.assert_allclose(
    apply(ids, mask), apply(padded(ids, 1), padded(mask, 0)), rtol=0, atol=ATOL
  )
  assert_parity(pretrained, torch_model, "roberta", padded(ids, 1), padded(mask, 0), types)


@pytest.mark.parametrize("remat", [False, True])
def test_logits_only_skips_the_last_layers_other_tokens(tmp_path, remat):
  """The logits-only path does fewer FLOPs (XLA's count) and gives the same logits and grads."""
  torch_model = tiny_torch_model("bert", 2, num_hidden_layers=1)
  torch_model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2, remat=remat)
  ids, mask, types = (jnp.asarray(x) for x in pair_batch("bert", 99))

  def loss(params, return_hidden):
    out = pretrained.module.apply({"params": params}, ids, mask, types, return_hidden=return_hidden)
    return jnp.sum((out[0] if return_hidden else out) ** 2)

  grads = {}
  flops = {}
  for full in (False, True):
    fn = jax.jit(jax.value_and_grad(lambda p, full=full: loss(p, full)))
    flops[full] = fn.lower(pretrained.params).compile().cost_analysis()["flops"]
    grads[full] = fn(pretrained.params)
  # One layer, 16 positions: the attention queries, output and FFN of 15 of them are gone.
  assert flops[False] < 0.6 * flops[True]
  np.testing.assert_allclose(grads[False][0], grads[True][0], rtol=1e-6)
  for a, b in zip(jax.tree.leaves(grads[False][1]), jax.tree.leaves(grads[True][1]), strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)

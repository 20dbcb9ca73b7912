"""The real all-MiniLM-L6-v2 checkpoint (BertModel layout: no prefix, no classifier)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pats_jax import models

pytestmark = pytest.mark.slow

ATOL = 1e-5
SENTENCES = (
  ["A man is playing a guitar.", "The cat sat.", "Stocks fell sharply on Monday morning."],
  ["Someone plays an instrument on stage tonight.", "A dog ran.", "Markets dropped."],
)


@pytest.fixture(scope="module")
def minilm(minilm_dir):
  return models.load(minilm_dir, num_labels=1, seed=3)


def encode(tokenizer):
  batch = tokenizer(*SENTENCES, padding=True, return_tensors="np")
  return tuple(batch[k].astype(np.int32) for k in ("input_ids", "attention_mask", "token_type_ids"))


def test_minilm_loads(minilm, minilm_dir):
  assert minilm.config.model_type == "bert"
  assert minilm.config.num_hidden_layers == 6 and minilm.config.hidden_size == 384
  assert minilm.newly_initialized == ["classifier.weight", "classifier.bias"]
  assert minilm.unused_tensors == []
  assert minilm.source == str(minilm_dir.resolve())
  assert minilm.tokenizer.is_fast
  assert minilm.params["head"]["classifier"]["kernel"].shape == (384, 1)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(minilm.params))


def test_minilm_hidden_parity_with_torch(minilm, minilm_dir):
  torch = pytest.importorskip("torch")
  from transformers import BertModel

  ids, mask, types = encode(minilm.tokenizer)
  _, hidden = minilm.module.apply({"params": minilm.params}, ids, mask, types, return_hidden=True)
  reference = BertModel.from_pretrained(minilm_dir).eval()
  with torch.no_grad():
    ref = reference(
      input_ids=torch.tensor(ids, dtype=torch.long),
      attention_mask=torch.tensor(mask, dtype=torch.long),
      token_type_ids=torch.tensor(types, dtype=torch.long),
    )
  real = mask.astype(bool)
  np.testing.assert_allclose(
    np.asarray(hidden)[real], ref.last_hidden_state.numpy()[real], rtol=0, atol=ATOL
  )


def test_minilm_round_trip_regression(minilm, tmp_path):
  torch = pytest.importorskip("torch")
  from transformers import AutoModelForSequenceClassification

  out = models.save_pretrained(minilm, minilm.params, tmp_path / "stsb")
  config = json.loads((out / "config.json").read_text())
  assert config["problem_type"] == "regression"
  assert config["architectures"] == ["BertForSequenceClassification"]
  reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
  assert type(reloaded).__name__ == "BertForSequenceClassification"
  assert reloaded.config.num_labels == 1

  ids, mask, types = encode(minilm.tokenizer)
  logits = minilm.module.apply({"params": minilm.params}, ids, mask, types)
  with torch.no_grad():
    ref = reloaded(
      input_ids=torch.tensor(ids, dtype=torch.long),
      attention_mask=torch.tensor(mask, dtype=torch.long),
      token_type_ids=torch.tensor(types, dtype=torch.long),
    ).logits.numpy()
  np.testing.assert_allclose(np.asarray(logits), ref, rtol=0, atol=ATOL)
  # The tokenizer travels with the checkpoint.
  again = models.load(out, num_labels=1)
  assert again.newly_initialized == [] and again.unused_tensors == []
  assert again.tokenizer(SENTENCES[0])["input_ids"] == minilm.tokenizer(SENTENCES[0])["input_ids"]

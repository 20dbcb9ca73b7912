"""DeBERTa-v2 (DeBERTa-v3 checkpoints) against transformers' `DebertaV2ForSequenceClassification`.

Small random models (every torch parameter drawn at random, LayerNorms included) saved with
`save_pretrained`, or as DeBERTa-v3 ships them (`pytorch_model.bin` and a SentencePiece
`spm.model`), loaded with ours: logits and hidden states within 1e-5 in float32 on right-padded
batches of several lengths, at every position (transformers 5 gives padding queries a uniform
attention over all keys, and so do we), gradients of every parameter, and the way back through
`save_pretrained`. Run with `python -m pytest -p no:xdist -q tests/test_models_deberta.py`.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pats_jax import models
from pats_jax.models import convert, deberta, flops, known, tiny
from pats_jax.models.config import ModelConfig

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ATOL = 1e-5
VOCAB = 99
# DeBERTa-v3's options, small: log buckets (4 exact distances each way, then log-spaced up to
# 40), position keys from the content projections, LayerNorm-ed R, no absolute positions.
V3 = dict(
  vocab_size=VOCAB,
  hidden_size=32,
  num_hidden_layers=2,
  num_attention_heads=4,
  intermediate_size=37,
  max_position_embeddings=40,
  type_vocab_size=0,
  relative_attention=True,
  max_relative_positions=-1,
  position_buckets=8,
  position_biased_input=False,
  pos_att_type="p2c|c2p",
  share_att_key=True,
  norm_rel_ebd="layer_norm",
  layer_norm_eps=1e-7,
  pad_token_id=0,
)
RICH = "own_position_projections_absolute_positions_token_types"
VARIANTS = {
  "v3": {},
  # The batch (24 tokens) is longer than the 16 positions: buckets beyond P are clipped.
  "v3_short_positions": {"max_position_embeddings": 16},
  RICH: {
    "share_att_key": False,
    "position_buckets": -1,
    "max_relative_positions": 6,
    "norm_rel_ebd": "none",
    "position_biased_input": True,
    "type_vocab_size": 2,
    "embedding_size": 24,
    "hidden_act": "gelu_new",
    "pooler_hidden_act": "tanh",
  },
  "c2p_only": {"pos_att_type": "c2p", "share_att_key": False},
  "p2c_only": {"pos_att_type": ["p2c"], "share_att_key": False, "position_buckets": 4},
  # No relative terms, but the scale still counts pos_att_type's: √(3d).
  "no_relative_attention": {
    "relative_attention": False,
    "norm_rel_ebd": "none",
    "position_biased_input": True,
  },
}


def torch_model(num_labels: int, seed: int = 0, **overrides):
  """A random `DebertaV2ForSequenceClassification` (eval mode), every parameter drawn."""
  config = transformers.DebertaV2Config(**{**V3, **overrides}, num_labels=num_labels)
  torch.manual_seed(seed)
  model = transformers.DebertaV2ForSequenceClassification(config).eval()
  with torch.no_grad():
    for name, param in model.named_parameters():
      noise = 0.2 * torch.randn_like(param)
      param.copy_(1.0 + noise if "LayerNorm.weight" in name else noise)
  return model


def padded_batch(seed: int = 0, lengths=(24, 3, 13, 1)):
  """Right-padded ids (never the pad id 0 at tokens), mask, and token types 1 on second halves."""
  rng = np.random.default_rng(seed)
  ids = np.zeros((len(lengths), max(lengths)), np.int32)
  mask, types = np.zeros_like(ids), np.zeros_like(ids)
  for row, length in enumerate(lengths):
    ids[row, :length] = rng.integers(3, VOCAB, length)
    mask[row, :length] = 1
    types[row, length // 2 : length] = 1
  return ids, mask, types


def torch_inputs(model, ids, mask, types) -> dict:
  inputs = {"input_ids": torch.tensor(ids).long(), "attention_mask": torch.tensor(mask).long()}
  if model.config.type_vocab_size > 0:
    inputs["token_type_ids"] = torch.tensor(types).long()
  return inputs


def assert_parity(pretrained, model, ids, mask, types):
  with torch.no_grad():
    expected = model(**torch_inputs(model, ids, mask, types), output_hidden_states=True)
  apply = lambda **kw: pretrained.module.apply(
    {"params": pretrained.params}, ids, mask, types, **kw
  )
  logits, hidden = apply(return_hidden=True)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, expected.logits.numpy(), rtol=0, atol=ATOL)
  # Every position, padding included.
  np.testing.assert_allclose(hidden, expected.hidden_states[-1].numpy(), rtol=0, atol=ATOL)
  # Logits only: the last layer computes the first token alone.
  np.testing.assert_allclose(apply(), expected.logits.numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("num_labels", [1, 3])
def test_logits_and_hidden_states_match_transformers(tmp_path, variant, num_labels):
  model = torch_model(num_labels, **VARIANTS[variant])
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=num_labels)
  assert pretrained.newly_initialized == [] and pretrained.unused_tensors == []
  assert_parity(pretrained, model, *padded_batch())


def test_token_types_and_padding_matter_where_they_should(tmp_path):
  """Guards the parity test: token types change a model that has them; extra padding changes
  no logits."""
  model = torch_model(2, **VARIANTS[RICH])
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=2)
  ids, mask, types = padded_batch()
  apply = lambda i, m, t: np.asarray(
    pretrained.module.apply({"params": pretrained.params}, i, m, t)
  )
  assert np.abs(apply(ids, mask, types) - apply(ids, mask, 0 * types)).max() > 1e-3
  padded = lambda x: np.pad(x, ((0, 0), (0, 5)))
  np.testing.assert_allclose(
    apply(padded(ids), padded(mask), padded(types)), apply(ids, mask, types), rtol=0, atol=ATOL
  )


@pytest.mark.parametrize(
  "variant", ["v3", "own_position_projections_absolute_positions_token_types"]
)
@pytest.mark.parametrize("scan_layers", [False, True])
def test_gradients_match_torch_autograd(tmp_path, variant, scan_layers):
  model = torch_model(3, seed=1, **VARIANTS[variant])
  model.save_pretrained(tmp_path)
  pretrained = models.load(tmp_path, num_labels=3, scan_layers=scan_layers)
  ids, mask, types = padded_batch(seed=1)

  def loss(params):
    logits = pretrained.module.apply({"params": params}, ids, mask, types)
    return jnp.sum(jnp.sin(3.0 * logits))

  grads = convert.to_hf(jax.jit(jax.grad(loss))(pretrained.params), pretrained.config)
  model.zero_grad()
  torch.sin(3.0 * model(**torch_inputs(model, ids, mask, types)).logits).sum().backward()
  expected = {name: param.grad.numpy() for name, param in model.named_parameters()}
  assert set(grads) == set(expected)
  for name, grad in grads.items():
    assert np.abs(expected[name]).max() > 0 or "token_type" in name, name
    # The token-type table's gradient sums every token of the batch in float32, in an order
    # that differs between the two libraries (and between transformers releases): 2e-5.
    np.testing.assert_allclose(grad, expected[name], rtol=1e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize(
  "variant", ["v3", "own_position_projections_absolute_positions_token_types"]
)
def test_save_pretrained_loads_in_transformers_with_the_same_logits(tmp_path, variant):
  model = torch_model(2, **VARIANTS[variant])
  model.save_pretrained(tmp_path / "in")
  pretrained = models.load(tmp_path / "in", num_labels=3, reinit_head=True, scan_layers=True)
  tuned = jax.tree.map(lambda x: x + 0.01, pretrained.params)
  out = models.save_pretrained(pretrained, tuned, tmp_path / "out")
  saved = json.loads((out / "config.json").read_text())
  assert "embedding_size" not in saved or saved["embedding_size"] == 24
  reloaded = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
  assert type(reloaded).__name__ == "DebertaV2ForSequenceClassification"
  ids, mask, types = padded_batch()
  with torch.no_grad():
    expected = reloaded(**torch_inputs(reloaded, ids, mask, types)).logits.numpy()
  ours = pretrained.module.apply({"params": tuned}, ids, mask, types)
  np.testing.assert_allclose(ours, expected, rtol=0, atol=ATOL)


def test_pytorch_model_bin_alone_loads_with_the_same_logits(tmp_path):
  """DeBERTa-v3 ships `pytorch_model.bin` (a torch state dict) and no safetensors."""
  model = torch_model(2)
  model.config.save_pretrained(tmp_path)
  torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  pretrained = models.load(tmp_path, num_labels=2)
  assert pretrained.unused_tensors == []
  assert_parity(pretrained, model, *padded_batch())


def _write_sentencepiece_model(path) -> None:
  """A Unigram SentencePiece model with DeBERTa-v3's special pieces ([PAD] 0, [CLS] 1, [SEP] 2,
  [UNK] 3, [MASK])."""
  import sentencepiece

  with path.open("wb") as model_file:
    sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(["the cat sees the dog near the old house", "a good movie"] * 50),
      model_writer=model_file,
      vocab_size=40,
      model_type="unigram",
      hard_vocab_limit=False,
      pad_id=0,
      bos_id=1,
      eos_id=2,
      unk_id=3,
      pad_piece="[PAD]",
      bos_piece="[CLS]",
      eos_piece="[SEP]",
      unk_piece="[UNK]",
      user_defined_symbols=["[MASK]"],
      minloglevel=2,
    )


def test_deberta_v3_layout_spm_model_and_pytorch_model_bin(tmp_path):
  """The files of microsoft/deberta-v3-*: config.json, pytorch_model.bin, spm.model and a
  tokenizer_config.json without a tokenizer class; AutoTokenizer converts spm.model."""
  pytest.importorskip("sentencepiece")
  import sentencepiece

  _write_sentencepiece_model(tmp_path / "spm.model")
  config = {"do_lower_case": False, "vocab_type": "spm"}
  (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
  model = torch_model(2, vocab_size=VOCAB)
  model.config.save_pretrained(tmp_path)
  torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
  pretrained = models.load(tmp_path, num_labels=2)
  assert type(pretrained.tokenizer).__name__ == "DebertaV2Tokenizer"
  texts = ["the cat sees the dog", "a good old movie near the house"]
  batch = pretrained.tokenizer(texts, padding=True, return_tensors="np")
  processor = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "spm.model"))
  for row, text in zip(batch["input_ids"], texts, strict=True):
    assert list(row[row != 0]) == [1, *processor.encode(text), 2]
  ids, mask = batch["input_ids"].astype(np.int32), batch["attention_mask"].astype(np.int32)
  assert_parity(pretrained, model, ids, mask, np.zeros_like(ids))


def test_spm_model_without_sentencepiece_says_what_to_install(tmp_path, monkeypatch):
  tiny.write_tiny_checkpoint(tmp_path, model_type="deberta-v2", tokenizer=False)
  (tmp_path / "spm.model").write_bytes(b"not read")
  (tmp_path / "tokenizer_config.json").write_text("{}")
  monkeypatch.setitem(sys.modules, "sentencepiece", None)
  with pytest.raises(
    ImportError, match=r"spm\.model is a SentencePiece.*pip install sentencepiece"
  ):
    models.load(tmp_path, num_labels=2)


def test_tiny_checkpoint_has_deberta_v2s_tokenizer(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, model_type="deberta-v2")
  pretrained = models.load(folder, num_labels=2)
  tokenizer = pretrained.tokenizer
  assert type(tokenizer).__name__ == "DebertaV2Tokenizer"
  assert (tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id) == (0, 1, 2)
  pieces = tokenizer.convert_ids_to_tokens(tokenizer("The cat, fine!")["input_ids"])
  assert pieces == ["[CLS]", "\u2581the", "\u2581cat", ",", "\u2581fine", "!", "[SEP]"]
  assert len(tokenizer) <= pretrained.config.vocab_size


@pytest.mark.parametrize(("buckets", "max_position"), [(256, 512), (8, 40), (16, 100), (4, 10)])
def test_log_buckets_match_transformers(buckets, max_position):
  from transformers.models.deberta_v2 import modeling_deberta_v2

  relative = np.arange(-2048, 2049)
  expected = modeling_deberta_v2.make_log_bucket_position(
    torch.tensor(relative), buckets, max_position
  )
  ours = deberta.log_bucket_positions(relative, buckets, max_position)
  np.testing.assert_array_equal(ours, expected.long().numpy())


@pytest.mark.parametrize(
  ("overrides", "field"),
  [
    ({"conv_kernel_size": 3}, "conv_kernel_size"),
    ({"pooler_hidden_size": 16}, "pooler_hidden_size"),
    ({"attention_head_size": 4}, "attention_head_size"),
    ({"pos_att_type": "p2p|c2p"}, "pos_att_type"),
    ({"norm_rel_ebd": "batch_norm"}, "norm_rel_ebd"),
    ({"relative_attention": False}, "norm_rel_ebd"),
    ({"position_buckets": 1}, "position_buckets"),
    ({"pooler_hidden_act": "mish"}, "pooler_hidden_act"),
  ],
)
def test_unsupported_config_fields_are_named(overrides, field):
  with pytest.raises(ValueError, match=field):
    ModelConfig.from_hf_dict(deberta.tiny_config(**overrides), num_labels=2)


@pytest.mark.parametrize(
  ("changes", "field"),
  [({"conv_kernel_size": 3}, "conv_kernel_size"), ({"pos_att_type": "p2p"}, "pos_att_type")],
)
def test_unsupported_config_field_is_a_checkpoint_error_naming_file_and_field(
  tmp_path, changes, field
):
  folder = tiny.write_tiny_checkpoint(tmp_path, model_type="deberta-v2", tokenizer=False)
  config_file = folder / "config.json"
  config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **changes}))
  with pytest.raises(models.CheckpointError) as info:
    models.load(folder, num_labels=2)
  message = str(info.value)
  assert message.startswith(str(config_file)) and field in message, message


def test_masks_of_the_relative_position_table(tmp_path):
  """PATS perturbs (and AdamW decays) R like BERT's position table, not its LayerNorm; SAGE's
  selection stays inside the layers."""
  import pats_jax

  folder = tiny.write_tiny_checkpoint(tmp_path, model_type="deberta-v2", tokenizer=False)
  encoder = models.load(folder, num_labels=2).params["encoder"]
  weights = pats_jax.weight_matrix_mask(encoder)
  assert weights["rel_embeddings"] == {"embedding": True}
  assert weights["rel_embeddings_norm"] == {"scale": False, "bias": False}
  sage = pats_jax.encoder_linear_mask({"encoder": encoder})["encoder"]
  assert not any(
    jax.tree.leaves(sage["rel_embeddings"]) + jax.tree.leaves(sage["rel_embeddings_norm"])
  )


def test_flop_count_adds_the_relative_terms():
  hf = known.known_config("microsoft/deberta-v3-base")
  content_only = {key: hf[key] for key in ("num_hidden_layers", "hidden_size", "intermediate_size")}
  L, H, batch = hf["num_hidden_layers"], hf["hidden_size"], 4

  def relative(shape, length):
    full = flops.train_step_flops(shape, batch_size=batch, length=length)
    return full - flops.train_step_flops(content_only, batch_size=batch, length=length)

  # 128 tokens: every distance is below position_buckets / 2 = 128, so exact: rows 129..383
  # of R. Two terms (c2p, p2c), each a projection of the rows and scores against them.
  assert relative(hf, 128) == 6 * 2 * L * (255 * H * H + batch * 128 * 255 * H)
  # 1024 tokens reach all 2 x 256 rows; c2p alone is one term.
  c2p = {**hf, "pos_att_type": "c2p"}
  assert relative(c2p, 1024) == 6 * 1 * L * (512 * H * H + batch * 1024 * 512 * H)
  assert relative({**hf, "relative_attention": False, "norm_rel_ebd": "none"}, 128) == 0


def test_cudnn_attention_warns_and_runs_the_einsum_path(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path, model_type="deberta-v2")
  with pytest.warns(UserWarning, match="cudnn"):
    cudnn = models.load(folder, num_labels=2, attention="cudnn")
  xla = models.load(folder, num_labels=2, attention="xla")
  ids, mask, types = padded_batch()
  with pytest.warns(UserWarning, match="cudnn"):
    logits = cudnn.module.apply({"params": cudnn.params}, ids, mask, types)
  np.testing.assert_array_equal(logits, xla.module.apply({"params": xla.params}, ids, mask, types))


def test_config_model_names_map_to_the_hub_and_are_listed_offline(monkeypatch):
  from pats_jax.training import sources

  monkeypatch.setattr(sources, "hub_reachable", lambda: False)
  assert sources.MODEL_HUB_IDS["deberta-v3-base"] == "microsoft/deberta-v3-base"
  assert sources.MODEL_HUB_IDS["deberta-v3-large"] == "microsoft/deberta-v3-large"
  assert sources.TINY_MODELS["tiny-deberta"] == "deberta-v2"
  help_text = sources.model_help("deberta-v3-base")
  assert "'microsoft/deberta-v3-base'" in help_text
  for name in ("deberta-v3-base", "deberta-v3-large", "tiny-deberta"):
    assert name in help_text.split("Named models:")[1], name


@pytest.mark.slow
def test_tiny_deberta_trains_with_stacked_layers_and_pats(tmp_path):
  """`config.model=tiny-deberta` with `scan_layers` (PATS per layer through `layer_axis`)."""
  from _train_helpers import tiny_config, use_compilation_cache

  from pats_jax.training import trainer

  use_compilation_cache()
  config = tiny_config(
    arg="method=pats,model=tiny-deberta",
    model="tiny-deberta",
    max_steps=3,
    **{"model_config.scan_layers": True},
  )
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["final"]["step"] == 3
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  losses = [line["loss"] for line in lines if "loss" in line]
  assert len(losses) == 3 and np.isfinite(losses).all()
  assert any("pats/amplitude_mean" in line for line in lines)


def test_hub_download_fetches_spm_model(tmp_path, monkeypatch):
  """A hub id of DeBERTa-v3's layout: spm.model is fetched with the other tokenizer files."""
  import huggingface_hub
  from huggingface_hub.errors import EntryNotFoundError

  from pats_jax.models import hub

  repo = tmp_path / "repo"
  repo.mkdir()
  for name in ("config.json", "pytorch_model.bin", "spm.model", "tokenizer_config.json"):
    (repo / name).write_text("{}")
  fetched = []

  def download(repo_id, filename, cache_dir=None):
    if not (repo / filename).is_file():
      raise EntryNotFoundError(f"{repo_id} has no {filename}")
    fetched.append(filename)
    return str(repo / filename)

  monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
  files = hub.resolve("microsoft/deberta-v3-base")
  assert files.weights_file.name == "pytorch_model.bin" and files.has_tokenizer
  assert "spm.model" in fetched

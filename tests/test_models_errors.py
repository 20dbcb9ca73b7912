"""Bad checkpoints and arguments fail with errors that name the file, tensor and fix."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from pats_jax import models
from pats_jax.models import checkpoint_io, tiny


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  return tiny.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), tokenizer=False)


@pytest.fixture
def copy(source, tmp_path):
  folder = tmp_path / "ckpt"
  shutil.copytree(source, folder)
  return folder


def edit_config(folder, **changes):
  config = json.loads((folder / "config.json").read_text())
  config.update(changes)
  (folder / "config.json").write_text(json.dumps(config))


def edit_tensors(folder, change):
  path = folder / "model.safetensors"
  tensors = checkpoint_io.read_tensors(path)
  change(tensors)
  checkpoint_io.write_safetensors(tensors, path)


def test_unknown_model_type(copy):
  edit_config(copy, model_type="gpt2")
  with pytest.raises(ValueError, match=r"config\.json.*'gpt2'.*bert.*roberta"):
    models.load(copy, num_labels=2)


@pytest.mark.parametrize(
  ("changes", "problem"),
  [
    ({"model_type": None}, "model_type None is not supported"),
    ({"num_attention_heads": 0}, "num_attention_heads must be an integer >= 1, got 0"),
    ({"hidden_size": "32"}, "hidden_size must be an integer >= 1, got '32'"),
    ({"id2label": {"zero": "a", "one": "b"}}, "invalid literal for int()"),
  ],
)
def test_config_that_cannot_load_is_a_checkpoint_error_naming_the_file(copy, changes, problem):
  edit_config(copy, **changes)
  with pytest.raises(models.CheckpointError) as info:
    models.load(copy, num_labels=2)
  message = str(info.value)
  assert message.startswith(str(copy / "config.json")) and problem in message, message
  assert message.count(str(copy / "config.json")) == 1, message


def test_unsupported_options(copy):
  edit_config(copy, position_embedding_type="relative_key")
  with pytest.raises(ValueError, match="relative_key"):
    models.load(copy, num_labels=2)
  edit_config(copy, position_embedding_type="absolute", hidden_act="mish")
  with pytest.raises(ValueError, match=r"config\.json.*'mish'"):
    models.load(copy, num_labels=2)


def test_wrong_tensor_shape_names_tensor_and_file(copy):
  name = "bert.encoder.layer.1.intermediate.dense.weight"
  edit_tensors(copy, lambda t: t.update({name: np.zeros((5, 32), np.float32)}))
  with pytest.raises(ValueError) as info:
    models.load(copy, num_labels=2)
  message = str(info.value)
  assert name in message and str(copy / "model.safetensors") in message
  assert "shape (5, 32), expected (37, 32)" in message


def test_head_with_other_label_count(copy):
  with pytest.raises(ValueError, match=r"'classifier\.weight'.*num_labels.*reinit_head"):
    models.load(copy, num_labels=3)
  loaded = models.load(copy, num_labels=3, reinit_head=True)
  assert "classifier.weight" in loaded.newly_initialized
  assert loaded.params["head"]["classifier"]["kernel"].shape == (32, 3)


def test_missing_tensor_names_tensor_and_file(copy):
  name = "bert.encoder.layer.0.attention.self.key.bias"
  edit_tensors(copy, lambda t: t.pop(name))
  with pytest.raises(ValueError) as info:
    models.load(copy, num_labels=2)
  assert name in str(info.value) and str(copy / "model.safetensors") in str(info.value)


def test_fewer_layers_than_config(copy):
  edit_config(copy, num_hidden_layers=3)
  with pytest.raises(ValueError, match=r"missing 16 tensor\(s\).*encoder\.layer\.2\."):
    models.load(copy, num_labels=2)


def test_truncated_safetensors_names_tensor_and_file(copy):
  path = copy / "model.safetensors"
  header, start = checkpoint_io.check_safetensors(path)
  last_name = max((v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")[1]
  data = path.read_bytes()
  path.write_bytes(data[:-100])
  with pytest.raises(ValueError, match=re.escape(f"{path} is truncated: tensor '{last_name}'")):
    models.load(copy, num_labels=2)
  path.write_bytes(data[: start - 10])
  with pytest.raises(ValueError, match=re.escape(f"{path} is truncated")):
    models.load(copy, num_labels=2)
  path.write_bytes(data[:3])
  with pytest.raises(ValueError, match="no header"):
    models.load(copy, num_labels=2)


def test_corrupt_config_json(copy):
  (copy / "config.json").write_text("{not json")
  with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
    models.load(copy, num_labels=2)


def test_missing_files(tmp_path, copy):
  with pytest.raises(FileNotFoundError, match="no checkpoint folder"):
    models.load(tmp_path / "nowhere", num_labels=2)
  with pytest.raises(FileNotFoundError, match="is a file"):
    models.load(copy / "config.json", num_labels=2)
  (copy / "model.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match=r"none of the weight files.*model\.safetensors"):
    models.load(copy, num_labels=2)
  (copy / "config.json").unlink()
  with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
    models.load(copy, num_labels=2)


def test_bad_arguments(source):
  with pytest.raises(ValueError, match="attention must be one of"):
    models.load(source, num_labels=2, attention="flash")
  with pytest.raises(ValueError, match="num_labels must be >= 1"):
    models.load(source, num_labels=0)
  with pytest.raises(ValueError, match="hidden_dropout_prob must be in"):
    models.load(source, num_labels=2, hidden_dropout=1.5)
  with pytest.raises(TypeError, match="floating"):
    models.load(source, num_labels=2, dtype=np.int32)


def test_save_with_wrong_params_tree(source, tmp_path):
  loaded = models.load(source, num_labels=2)
  params = dict(loaded.params)
  params.pop("head")
  with pytest.raises(ValueError, match="params lack head/pooler/kernel"):
    models.save_pretrained(loaded, params, tmp_path / "out")


def test_too_long_inputs(source):
  loaded = models.load(source, num_labels=2)
  ids = np.ones((1, loaded.config.max_position_embeddings + 1), np.int32)
  with pytest.raises(ValueError, match="exceeds the model's 65 positions"):
    loaded.module.apply({"params": loaded.params}, ids)

"""The Hub and TFDS sources, through local stand-ins built from the real GLUE files, agree
with the local source; `source="auto"` picks the right one."""

from __future__ import annotations

import pathlib

import datasets
import numpy as np
import pytest

from pats_jax import data
from pats_jax.data import glue, hub, tfds_source

# (task, split) pairs copied into the stand-in snapshot of nyu-mll/glue.
SNAPSHOT_SPLITS = [
  ("cola", "validation"), ("cola", "test"), ("sst2", "validation"), ("mrpc", "train"),
  ("mrpc", "test"), ("stsb", "validation"), ("stsb", "test"), ("rte", "train"),
  ("rte", "validation"), ("wnli", "validation"), ("ax", "test"),
]


def _hub_style(task: str, split: str, dataset: datasets.Dataset) -> datasets.Dataset:
  """Adds the Hub's MRPC quirks: train `idx` with gaps, test rows with labels."""
  if task != "mrpc":
    return dataset
  columns = dataset[:]
  if split == "train":
    columns["idx"] = (np.arange(dataset.num_rows) * 2 + 1).tolist()
  if split == "test":
    columns["label"] = (np.arange(dataset.num_rows) % 2).tolist()
  return datasets.Dataset.from_dict(columns, features=dataset.features)


@pytest.fixture(scope="module")
def hub_snapshot(glue_dir, tmp_path_factory) -> pathlib.Path:
  """A folder laid out like the nyu-mll/glue repository (parquet per config/split + README)."""
  root = tmp_path_factory.mktemp("nyu-mll-glue")
  configs: dict[str, list[str]] = {}
  for task, split in SNAPSHOT_SPLITS:
    local_split = data.load_glue(task, split, source="local", data_dir=glue_dir)
    (root / task).mkdir(exist_ok=True)
    _hub_style(task, split, local_split).to_parquet(root / task / f"{split}-00000-of-00001.parquet")
    configs.setdefault(task, []).append(split)
  card = ["---", "configs:"]
  for task, splits in configs.items():
    card += [f"- config_name: {task}", "  data_files:"]
    for split in splits:
      card += [f"  - split: {split}", f"    path: {task}/{split}-*"]
  (root / "README.md").write_text("\n".join([*card, "---", ""]), encoding="utf-8")
  return root


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
  monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.mark.slow
@pytest.mark.parametrize(("task", "split"), SNAPSHOT_SPLITS)
def test_hub_source_agrees_with_local(glue_dir, hub_snapshot, task, split):
  from_local = data.load_glue(task, split, source="local", data_dir=glue_dir)
  from_hub = data.load_glue(task, split, source="hf", data_dir=hub_snapshot)
  assert from_hub.features == from_local.features
  assert from_hub.num_rows == from_local.num_rows
  assert from_hub[:] == from_local[:]


def _tfds_records(dataset: datasets.Dataset, spec, seed: int) -> list[dict[str, object]]:
  """Examples as `tfds.as_numpy` yields them: bytes, numpy scalars, hashed order."""
  keys = [key for key in spec.text_keys if key is not None]
  rows = dataset[:]
  records = [
    {**{key: rows[key][i].encode("utf-8") for key in keys},
     "label": (np.float32 if spec.is_regression else np.int64)(rows["label"][i]),
     "idx": np.int32(3 * rows["idx"][i])}  # Gaps, as TFDS MRPC train/dev have.
    for i in range(dataset.num_rows)
  ]
  return [records[i] for i in np.random.default_rng(seed).permutation(len(records))]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "split"), [("rte", "validation"), ("stsb", "train"),
                                             ("mrpc", "validation"), ("cola", "test")])
def test_tfds_mapping_agrees_with_local(glue_dir, task, split):
  spec = data.get_task(task)
  from_local = data.load_glue(task, split, source="local", data_dir=glue_dir)
  mapped = tfds_source.from_tfds_records(
    spec, split, _tfds_records(from_local, spec, seed=0), origin="test",
    label_names=spec.label_names)
  assert mapped.features == from_local.features
  assert mapped[:] == from_local[:]


@pytest.mark.slow
def test_tfds_load_through_tfds_mock_data(glue_dir):
  tfds = pytest.importorskip(
    "tensorflow_datasets", reason="tensorflow-datasets not installed (pip install "
    "'pats_jax[tfds]'); its mapping is tested without it above")
  import tensorflow as tf

  from_local = data.load_glue("rte", "validation", source="local", data_dir=glue_dir)
  rows = from_local[:]

  def as_dataset(*args, **kwargs):
    return tf.data.Dataset.from_tensor_slices({
      "sentence1": rows["sentence1"], "sentence2": rows["sentence2"],
      "label": np.asarray(rows["label"], np.int64), "idx": np.asarray(rows["idx"], np.int32)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    from_tfds = data.load_glue("rte", "validation", source="tfds")
  assert from_tfds[:] == from_local[:]


def test_tfds_absent_gives_an_install_hint(monkeypatch):
  import builtins

  real_import = builtins.__import__

  def no_tfds(name, *args, **kwargs):
    if name.startswith("tensorflow_datasets"):
      raise ImportError("No module named 'tensorflow_datasets'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_tfds)
  with pytest.raises(ImportError, match=r"pats_jax\[tfds\]"):
    data.load_glue("rte", "validation", source="tfds")


def test_auto_source_resolution(tmp_path, monkeypatch):
  monkeypatch.delenv("GLUE_DIR", raising=False)
  monkeypatch.setattr(glue, "candidate_glue_dirs", lambda: [tmp_path / "nowhere"])
  assert data.resolve_source("rte", "dev", data_dir=tmp_path) == ("local", tmp_path)
  assert data.resolve_source("rte", "dev") == ("hf", None)
  monkeypatch.setenv("GLUE_DIR", str(tmp_path))
  assert data.resolve_source("rte", "dev") == ("local", tmp_path)
  assert data.resolve_source("rte", "dev", source="hf") == ("hf", None)
  monkeypatch.delenv("GLUE_DIR")
  found = tmp_path / "glue_data"
  (found / "RTE").mkdir(parents=True)
  (found / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\t0\n")
  monkeypatch.setattr(glue, "candidate_glue_dirs", lambda: [tmp_path / "nowhere", found])
  assert data.resolve_source("rte", "dev") == ("local", found)
  assert data.resolve_source("rte", "train") == ("hf", None)  # Not in the found folder.
  assert data.load_glue("rte", "dev")["sentence2"][:] == ["b"]
  with pytest.raises(ValueError, match="source must be one of"):
    data.resolve_source("rte", "dev", source="s3")


@pytest.mark.slow
def test_auto_falls_back_to_the_hub(hub_snapshot, glue_dir, monkeypatch):
  monkeypatch.delenv("GLUE_DIR", raising=False)
  monkeypatch.setattr(glue, "candidate_glue_dirs", lambda: [])
  monkeypatch.setattr(hub, "HUB_DATASET", str(hub_snapshot))
  from_auto = data.load_glue("wnli", "validation")
  assert from_auto[:] == data.load_glue("wnli", "validation", data_dir=glue_dir)[:]


def test_unreachable_hub_names_the_environment_variable(monkeypatch):
  def offline(*args, **kwargs):
    raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub (LocalEntryNotFoundError)")

  monkeypatch.setattr(datasets, "load_dataset", offline)
  with pytest.raises(ConnectionError, match="GLUE_DIR") as info:
    data.load_glue("cola", "train", source="hf")
  assert "nyu-mll/glue:cola/train" in str(info.value)

"""The Hub and TFDS sources, through local stand-ins built from the real GLUE files, agree
with the local source; `source="auto"` picks the right one.

Hub: `datasets.load_dataset` on a local parquet snapshot laid out like nyu-mll/glue. TFDS: the
real `glue` builder prepared offline from the local files (only its downloads are replaced).
"""

from __future__ import annotations

import dataclasses
import pathlib
import urllib.parse

import datasets
import numpy as np
import pytest

from pats_jax import data
from pats_jax.data import glue, hub, tfds_source

# (task, split) pairs copied into the stand-in snapshot of nyu-mll/glue.
SNAPSHOT_SPLITS = [
  ("cola", "train"),
  ("cola", "validation"),
  ("cola", "test"),
  ("sst2", "validation"),
  ("mrpc", "train"),
  ("mrpc", "validation"),
  ("mrpc", "test"),
  ("stsb", "train"),
  ("stsb", "validation"),
  ("stsb", "test"),
  ("rte", "train"),
  ("rte", "validation"),
  ("wnli", "validation"),
  ("ax", "test"),
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
    {
      **{key: rows[key][i].encode("utf-8") for key in keys},
      "label": (np.float32 if spec.is_regression else np.int64)(rows["label"][i]),
      "idx": np.int32(3 * rows["idx"][i]),
    }  # Gaps, as TFDS MRPC train/dev have.
    for i in range(dataset.num_rows)
  ]
  return [records[i] for i in np.random.default_rng(seed).permutation(len(records))]


@pytest.mark.slow
@pytest.mark.parametrize(
  ("task", "split"),
  [("rte", "validation"), ("stsb", "train"), ("mrpc", "validation"), ("cola", "test")],
)
def test_tfds_mapping_agrees_with_local(glue_dir, task, split):
  spec = data.get_task(task)
  from_local = data.load_glue(task, split, source="local", data_dir=glue_dir)
  mapped = tfds_source.from_tfds_records(
    spec,
    split,
    _tfds_records(from_local, spec, seed=0),
    origin="test",
    label_names=spec.label_names,
  )
  assert mapped.features == from_local.features
  assert mapped[:] == from_local[:]


# --- TFDS through the real `glue` builder ----------------------------------------------------
# What is real TFDS code here: `tfds.builder("glue/<task>")` with its `_generate_examples`
# parsing the GLUE files, TFDS writing shuffled TFRecords, and `load_glue(source="tfds")` ->
# `tfds.load` -> `tfds.as_numpy` -> `tfds_source.from_tfds_columns` -> the shared examples
# mapping. The only stand-in is the download: `DownloadManager.download(_and_extract)` return
# local files (the real GLUE data, whose MRPC and AX files have the sha256 values TFDS records
# for its downloads; synthetic files for MNLI) instead of fetching the builder's URLs.

TFDS_REAL_TASKS = ("cola", "mrpc", "stsb", "rte", "wnli", "ax")
THREE_WAY_SPLITS = [
  ("cola", "train"),
  ("cola", "validation"),
  ("cola", "test"),
  ("mrpc", "train"),
  ("mrpc", "validation"),
  ("mrpc", "test"),
  ("stsb", "train"),
  ("stsb", "validation"),
  ("stsb", "test"),
  ("rte", "validation"),
  ("wnli", "validation"),
  ("ax", "test"),
]


@pytest.fixture(scope="module")
def tfds_lib():
  """`tensorflow_datasets`, imported once per module (importing TensorFlow takes seconds)."""
  return pytest.importorskip(
    "tensorflow_datasets",
    reason="tensorflow-datasets not installed (pip install "
    "'pats_jax[tfds]'); the TFDS record mapping is tested without it above",
  )


def _prepare_offline(tfds, name: str, data_dir: pathlib.Path, files: dict[str, pathlib.Path]):
  """Runs the real TFDS `download_and_prepare` of `name`, serving its URLs from `files`.

  `files` maps the builder's `data_url` and the basenames of other URLs to local paths; any
  other URL fails, so nothing is fetched from the network.
  """
  builder = tfds.builder(name, data_dir=str(data_dir))
  own_url = builder.builder_config.data_url

  def resolve(url: str) -> str:
    key = (
      url
      if url == own_url
      else pathlib.PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    )
    if key not in files:
      raise AssertionError(f"{name} asked for {url}, which this test does not serve")
    return str(files[key])

  def fake_download(self, url_or_urls):
    if isinstance(url_or_urls, dict):
      return {key: resolve(url) for key, url in url_or_urls.items()}
    return resolve(url_or_urls)

  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds.download.DownloadManager, "download", fake_download)
    patch.setattr(tfds.download.DownloadManager, "download_and_extract", fake_download)
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
        compute_stats=tfds.download.ComputeStatsMode.SKIP
      )
    )
  return builder


@pytest.fixture(scope="module")
def tfds_data_dir(tfds_lib, glue_dir, tmp_path_factory) -> pathlib.Path:
  """A TFDS data folder with glue/{cola,mrpc,stsb,rte,wnli,ax} prepared from the local files."""
  data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
  mrpc = glue_dir / "MRPC"
  for task in TFDS_REAL_TASKS:
    name = f"glue/{task}"
    url = tfds_lib.builder(name, data_dir=str(data_dir)).builder_config.data_url
    served = (
      {
        "msr_paraphrase_train.txt": mrpc / "msr_paraphrase_train.txt",
        "msr_paraphrase_test.txt": mrpc / "msr_paraphrase_test.txt",
        "mrpc_dev_ids.tsv": mrpc / "dev_ids.tsv",
      }
      if task == "mrpc"
      else {
        # AX downloads one TSV; the others download a zip whose extraction holds `<Task>/`.
        url: glue_dir / "diagnostic" / "diagnostic.tsv" if task == "ax" else glue_dir
      }
    )
    builder = _prepare_offline(tfds_lib, name, data_dir, served)
    local_rows = {
      split: data.load_glue(task, split, source="local", data_dir=glue_dir).num_rows
      for split in data.get_task(task).splits
    }
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == local_rows
  return data_dir


@pytest.mark.slow
@pytest.mark.parametrize(("task", "split"), THREE_WAY_SPLITS)
def test_local_hub_and_tfds_agree(glue_dir, hub_snapshot, tfds_data_dir, task, split):
  """The three sources give identical examples for the real GLUE data.

  local: the real TSVs. hf: `datasets.load_dataset` on a local snapshot of nyu-mll/glue
  (stand-in for the Hub download; parquet written from the local rows with the Hub's MRPC
  quirks). tfds: the real TFDS `glue` builder run on the local files (stand-in for its
  download only; see above), read back through `load_glue(source="tfds")`.
  """
  from_local = data.load_glue(task, split, source="local", data_dir=glue_dir)
  from_hub = data.load_glue(task, split, source="hf", data_dir=hub_snapshot)
  from_tfds = data.load_glue(task, split, source="tfds", data_dir=tfds_data_dir)
  assert from_tfds.features == from_hub.features == from_local.features
  assert from_tfds.split == from_local.split == split
  local_rows = from_local[:]
  assert from_hub[:] == local_rows
  assert from_tfds[:] == local_rows


@pytest.mark.slow
def test_tfds_reads_back_in_file_order_not_storage_order(tfds_lib, glue_dir, tfds_data_dir):
  """TFDS stores MRPC dev in hashed order with source-line `idx` (gaps); we undo both."""
  stored = tfds_lib.as_numpy(
    tfds_lib.load("glue/mrpc", split="validation", data_dir=str(tfds_data_dir), batch_size=-1)
  )
  assert not np.all(np.diff(stored["idx"]) > 0)  # Not stored in file order...
  assert stored["idx"].max() >= len(stored["idx"])  # ...and idx has gaps.
  ours = data.load_glue("mrpc", "dev", source="tfds", data_dir=tfds_data_dir)
  assert ours["idx"][:] == list(range(len(stored["idx"])))
  first = int(np.argmin(stored["idx"]))
  assert ours[0]["sentence1"] == stored["sentence1"][first].decode("utf-8")
  assert ours[0]["label"] == int(stored["label"][first])


def _write_tsv(path: pathlib.Path, header: list[str], rows: list[list[str]]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = ["\t".join(header), *("\t".join(row) for row in rows)]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.slow
def test_tfds_mnli_matched_and_mismatched(tfds_lib, tmp_path):
  """MNLI's five TFDS splits (`validation_matched`, ...) through the real builder.

  Synthetic files in the GLUE MNLI layout (the real MNLI is not available here) are served
  to the real `glue/mnli` builder; the local and TFDS sources must agree on every split,
  including non-ASCII text and all three labels.
  """
  extracted = tmp_path / "extracted"
  nli = ("entailment", "neutral", "contradiction")
  for split_file, count, labelled in [
    ("train", 7, True),
    ("dev_matched", 5, True),
    ("dev_mismatched", 4, True),
    ("test_matched", 3, False),
    ("test_mismatched", 6, False),
  ]:
    header = ["index", "genre", "sentence1", "sentence2", *(["gold_label"] if labelled else [])]
    rows = [
      [
        str(i),
        "fiction",
        f"{split_file} premise {i} caf\u00e9",
        f"hypothesis {i}",
        *([nli[(i * 7 + len(split_file)) % 3]] if labelled else []),
      ]
      for i in range(count)
    ]
    _write_tsv(extracted / "MNLI" / f"{split_file}.tsv", header, rows)
  data_dir = tmp_path / "tensorflow_datasets"
  builder = tfds_lib.builder("glue/mnli", data_dir=str(data_dir))
  _prepare_offline(tfds_lib, "glue/mnli", data_dir, {builder.builder_config.data_url: extracted})
  for split in data.get_task("mnli").splits:
    from_local = data.load_glue("mnli", split, source="local", data_dir=extracted)
    from_tfds = data.load_glue("mnli", split, source="tfds", data_dir=data_dir)
    assert from_tfds.features == from_local.features
    assert from_tfds[:] == from_local[:], split
  dev_mm = data.load_glue("mnli", "dev_mismatched", source="tfds", data_dir=data_dir)
  assert dev_mm["premise"][0] == "dev_mismatched premise 0 caf\u00e9"
  assert sorted(set(dev_mm["label"][:])) == [0, 1, 2]


@pytest.mark.slow
def test_tfds_class_names_are_checked(tfds_data_dir):
  """A TFDS ClassLabel order that differs from the task's is refused, not silently misread."""
  swapped = dataclasses.replace(data.get_task("rte"), label_names=("not_entailment", "entailment"))
  with pytest.raises(ValueError, match=r"class names .* differ"):
    tfds_source.load_tfds(swapped, "validation", data_dir=tfds_data_dir, download=False)


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

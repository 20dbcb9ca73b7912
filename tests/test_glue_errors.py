"""Bad GLUE input gives clear errors that name the file, line, value and the fix."""

from __future__ import annotations

import pathlib

import datasets
import pytest

from pats_jax import data
from pats_jax.data import glue, hub, tfds_source

RTE_HEADER = "index\tsentence1\tsentence2\tlabel"


def _write(root: pathlib.Path, relative: str, content: bytes | str) -> pathlib.Path:
  path = root / relative
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
  return path


def test_wrong_column_count_names_file_and_line(tmp_path):
  _write(tmp_path, "RTE/dev.tsv", f"{RTE_HEADER}\n0\ta\tb\tentailment\n1\ta b\tentailment\n")
  with pytest.raises(
    ValueError,
    match=r"RTE/dev\.tsv, line 3: expected 4 tab-separated "
    r"columns \(as in the header\), found 3",
  ):
    data.load_glue("rte", "dev", source="local", data_dir=tmp_path)


def test_wrong_column_count_in_headerless_cola(tmp_path):
  _write(tmp_path, "CoLA/train.tsv", "gj04\t1\t\tGood.\ngj04\t0\t*\tBad.\textra\n")
  with pytest.raises(ValueError, match=r"CoLA/train\.tsv, line 2: expected 4 .*no header"):
    data.load_glue("cola", "train", data_dir=tmp_path)


def test_non_utf8_bytes(tmp_path):
  _write(
    tmp_path,
    "RTE/dev.tsv",
    f"{RTE_HEADER}\n0\ta\tb\tentailment\n1\tcaf\xe9\tb\tentailment\n".encode("latin-1"),
  )
  with pytest.raises(ValueError, match=r"RTE/dev\.tsv: line 3, column 6 .*not valid UTF-8"):
    data.load_glue("rte", "dev", data_dir=tmp_path)


def test_empty_split(tmp_path):
  _write(tmp_path, "RTE/dev.tsv", f"{RTE_HEADER}\n")
  with pytest.raises(
    ValueError,
    match=r"RTE/dev\.tsv: split 'validation' of task 'rte' has "
    "no rows",
  ):
    data.load_glue("rte", "dev", data_dir=tmp_path)
  _write(tmp_path, "RTE/train.tsv", "")
  with pytest.raises(ValueError, match=r"RTE/train\.tsv: the file is empty"):
    data.load_glue("rte", "train", data_dir=tmp_path)
  _write(tmp_path, "CoLA/dev.tsv", "")
  with pytest.raises(ValueError, match="has no rows"):
    data.load_glue("cola", "dev", data_dir=tmp_path)


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"QQP/train\.tsv not found .*GLUE_DIR"):
    data.load_glue("qqp", "train", data_dir=tmp_path)


def test_unknown_labels(tmp_path):
  _write(tmp_path, "RTE/dev.tsv", f"{RTE_HEADER}\n0\ta\tb\tentailment\n1\ta\tb\tmaybe\n")
  with pytest.raises(
    ValueError,
    match=r"line 3: unknown label 'maybe' for task 'rte'; "
    r"expected one of \['entailment', 'not_entailment'\]",
  ):
    data.load_glue("rte", "dev", data_dir=tmp_path)
  _write(tmp_path, "SST-2/dev.tsv", "sentence\tlabel\ngood\t1\nbad\t2\n")
  with pytest.raises(ValueError, match=r"SST-2/dev\.tsv, line 3: unknown label '2'"):
    data.load_glue("sst2", "dev", data_dir=tmp_path)
  _write(
    tmp_path,
    "STS-B/dev.tsv",
    "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    "0\tg\tf\ty\to\ts\ts\ta\tb\tfive\n",
  )
  with pytest.raises(ValueError, match="line 2: label 'five' of task 'stsb' is not a number"):
    data.load_glue("stsb", "dev", data_dir=tmp_path)


def test_header_without_the_expected_columns(tmp_path):
  _write(tmp_path, "RTE/dev.tsv", "id\ttext_a\ttext_b\tlabel\n0\ta\tb\tentailment\n")
  with pytest.raises(ValueError, match=r"lacks columns \['sentence1', 'sentence2'\]"):
    data.load_glue("rte", "dev", data_dir=tmp_path)


def test_bad_names_and_folders(tmp_path, monkeypatch):
  with pytest.raises(ValueError, match="unknown GLUE task"):
    data.load_glue("glue", "train", data_dir=tmp_path)
  with pytest.raises(ValueError, match="has no split 'validation'"):
    data.load_glue("ax", "validation", data_dir=tmp_path)
  monkeypatch.setenv("GLUE_DIR", str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match=r"GLUE_DIR=.*is not a folder"):
    data.load_glue("rte", "dev")
  monkeypatch.delenv("GLUE_DIR")
  monkeypatch.setattr(glue, "candidate_glue_dirs", lambda: [])
  with pytest.raises(FileNotFoundError, match="source='local' needs a glue_data folder"):
    data.load_glue("rte", "dev", source="local")


def test_hub_data_with_other_class_names_or_fields():
  spec = data.get_task("rte")
  other = datasets.Dataset.from_dict(
    {"sentence1": ["a"], "sentence2": ["b"], "label": [0], "idx": [0]},
    features=datasets.Features(
      {
        "sentence1": datasets.Value("string"),
        "sentence2": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["not_entailment", "entailment"]),
        "idx": datasets.Value("int32"),
      }
    ),
  )
  with pytest.raises(ValueError, match=r"class names .* differ"):
    hub.from_hub_dataset(spec, "validation", other, origin="x")
  renamed = datasets.Dataset.from_dict({"premise": ["a"], "hypothesis": ["b"], "label": [0]})
  with pytest.raises(ValueError, match=r"columns \['sentence1', 'sentence2'\] missing"):
    hub.from_hub_dataset(spec, "validation", renamed, origin="x")
  out_of_range = datasets.Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": [5]})
  with pytest.raises(ValueError, match=r"labels \[5\] outside 0..1"):
    hub.from_hub_dataset(spec, "validation", out_of_range, origin="x")


def test_tfds_records_with_repeated_idx_or_missing_fields():
  spec = data.get_task("sst2")
  record = {"sentence": b"a", "label": 1, "idx": 0}
  with pytest.raises(ValueError, match="repeated idx"):
    tfds_source.from_tfds_records(spec, "train", [record, record], origin="x")
  with pytest.raises(ValueError, match=r"example 0 lacks fields \['label'\]"):
    tfds_source.from_tfds_records(spec, "train", [{"sentence": b"a", "idx": 0}], origin="x")
  with pytest.raises(ValueError, match="has no rows"):
    tfds_source.from_tfds_records(spec, "train", [], origin="x")

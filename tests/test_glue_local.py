"""GLUE from the standard glue_data layout: the real files (official row counts, labels,
quirks) and small synthetic folders for the tasks not present here (QNLI, QQP, MNLI)."""

from __future__ import annotations

import collections
import pathlib

import datasets
import pytest

from pats_jax import data
from pats_jax.data import local

# Official GLUE row counts (GLUE paper, Table 1, and the task READMEs).
OFFICIAL_ROWS = {
  ("cola", "train"): 8551,
  ("cola", "validation"): 1043,
  ("cola", "test"): 1063,
  ("sst2", "train"): 67349,
  ("sst2", "validation"): 872,
  ("sst2", "test"): 1821,
  ("mrpc", "train"): 3668,
  ("mrpc", "validation"): 408,
  ("mrpc", "test"): 1725,
  ("rte", "train"): 2490,
  ("rte", "validation"): 277,
  ("rte", "test"): 3000,
  ("stsb", "train"): 5749,
  ("stsb", "validation"): 1500,
  ("stsb", "test"): 1379,
  ("wnli", "train"): 635,
  ("wnli", "validation"): 71,
  ("wnli", "test"): 146,
  ("ax", "test"): 1104,
}

# An independent reading of each labelled file: (label column, text columns) by position,
# after plain `line.split("\t")`; the first line is a header except for CoLA.
RAW_COLUMNS = {
  "cola": (1, (3,), False),
  "sst2": (1, (0,), True),
  "mrpc": (0, (3, 4), True),
  "rte": (3, (1, 2), True),
  "stsb": (9, (7, 8), True),
  "wnli": (3, (1, 2), True),
}


def _raw_rows(path: pathlib.Path, header: bool) -> list[list[str]]:
  lines = path.read_text(encoding="utf-8").removeprefix("\ufeff").splitlines()
  return [line.split("\t") for line in lines[1 if header else 0 :]]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "split"), sorted(OFFICIAL_ROWS))
def test_official_row_counts(glue_dir, task, split):
  dataset = data.load_glue(task, split, source="local", data_dir=glue_dir)
  assert dataset.num_rows == OFFICIAL_ROWS[(task, split)]
  assert dataset.features == data.examples.features_for(data.get_task(task))
  assert dataset["idx"][:] == list(range(dataset.num_rows))
  if split == "test":
    assert set(dataset["label"][:]) == {-1}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(RAW_COLUMNS))
@pytest.mark.parametrize("split", ["train", "validation"])
def test_labels_and_texts_match_an_independent_reading(glue_dir, task, split):
  spec = data.get_task(task)
  dataset = data.load_glue(task, split, source="local", data_dir=glue_dir)
  label_col, text_cols, header = RAW_COLUMNS[task]
  rows = _raw_rows(local.split_path(glue_dir, task, split), header)
  assert len(rows) == dataset.num_rows
  keys = [key for key in spec.text_keys if key is not None]
  for key, col in zip(keys, text_cols, strict=True):
    assert dataset[key][:] == [row[col] for row in rows]
  raw_labels = [row[label_col] for row in rows]
  if spec.is_regression:
    assert dataset["label"][:] == pytest.approx([float(v) for v in raw_labels], abs=1e-6)
  elif task == "rte":
    assert dataset["label"][:] == [spec.label_names.index(v) for v in raw_labels]
  else:
    assert dataset["label"][:] == [int(v) for v in raw_labels]


@pytest.mark.slow
def test_label_names_and_known_label_counts(glue_dir):
  rte = data.load_glue("rte", "dev", source="local", data_dir=glue_dir)
  assert rte.features["label"].names == ["entailment", "not_entailment"]
  assert rte[0]["label"] == 1  # "Christopher Reeve had an accident." -> not_entailment.
  assert rte[1]["label"] == 0
  cola = data.load_glue("cola", "validation", source="local", data_dir=glue_dir)
  assert cola.features["label"].names == ["unacceptable", "acceptable"]
  # CoLA dev: 721 acceptable, 322 unacceptable (the in-domain + out-of-domain dev sets).
  assert collections.Counter(cola["label"][:]) == {1: 721, 0: 322}
  wnli = data.load_glue("wnli", "validation", source="local", data_dir=glue_dir)
  assert wnli.features["label"].names == ["not_entailment", "entailment"]
  stsb = data.load_glue("stsb", "validation", source="local", data_dir=glue_dir)
  assert stsb.features["label"].dtype == "float32"
  assert stsb[1]["label"] == pytest.approx(4.75)


@pytest.mark.slow
def test_mrpc_byte_order_mark_and_cola_headerless(glue_dir):
  assert (glue_dir / "MRPC" / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbf")
  mrpc = data.load_glue("mrpc", "train", source="local", data_dir=glue_dir)
  assert mrpc[0]["label"] == 1 and mrpc[1]["label"] == 0
  assert mrpc[0]["sentence1"].startswith("Amrozi accused his brother")
  assert not any(s.startswith("\ufeff") for s in mrpc["sentence1"][:])
  cola = data.load_glue("cola", "train", source="local", data_dir=glue_dir)
  # The first line is a row, not a header.
  assert cola[0]["sentence"].startswith("Our friends won't buy this analysis")
  cola_test = data.load_glue("cola", "test", source="local", data_dir=glue_dir)
  assert cola_test[0]["sentence"] == "Bill whistled past the house."


@pytest.mark.slow
def test_ax_diagnostic(glue_dir):
  ax = data.load_glue("AX", "test", source="local", data_dir=glue_dir)
  assert ax.column_names == ["premise", "hypothesis", "label", "idx"]
  assert ax[0]["premise"] == "The cat sat on the mat."
  assert ax[0]["hypothesis"] == "The cat did not sit on the mat."
  assert ax.features["label"].names == ["entailment", "neutral", "contradiction"]


@pytest.mark.slow
def test_qnli_dev_from_the_partial_folder(glue_dir, tmp_path):
  partial = glue_dir / "_partial" / "QNLI" / "dev.tsv"
  if not partial.is_file():
    pytest.skip(f"{partial} not present")
  (tmp_path / "QNLI").mkdir()
  (tmp_path / "QNLI" / "dev.tsv").symlink_to(partial)
  qnli = data.load_glue("qnli", "dev", source="local", data_dir=tmp_path)
  assert qnli.num_rows == 5463
  # QNLI dev.tsv as download_glue_data.py writes it: 2702 entailment / 2761 not_entailment.
  assert collections.Counter(qnli["label"][:]) == {0: 2702, 1: 2761}


def _write(path: pathlib.Path, lines: list[str], *, bom: bool = False) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  text = "\n".join(lines) + "\n"
  path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))


def test_qnli_qqp_mnli_synthetic_folder(tmp_path):
  _write(
    tmp_path / "QNLI" / "dev.tsv",
    [
      "index\tquestion\tsentence\tlabel",
      '0\tWho "won"?\tThe team won.\tentailment',
      "1\tWhen?\tNobody knows.\tnot_entailment",
    ],
  )
  _write(tmp_path / "QNLI" / "test.tsv", ["index\tquestion\tsentence", "0\tWhy?\tBecause."])
  _write(
    tmp_path / "QQP" / "train.tsv",
    [
      "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
      "7\t1\t2\tHow do I cook?\tHow can I cook?\t1",
      "8\t3\t4\tWhat is AI?\tWho is Al?\t0",
    ],
  )
  _write(tmp_path / "QQP" / "test.tsv", ["id\tquestion1\tquestion2", "0\tA?\tB?"])
  mnli_header = (
    "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
    "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
    "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
  )
  _write(
    tmp_path / "MNLI" / "dev_mismatched.tsv",
    [
      mnli_header,
      "0\t1\t1n\tfiction\t(b)\t(b)\t(p)\t(p)\tA man sleeps.\tA man is awake.\t"
      "contradiction\tcontradiction\tneutral\tcontradiction\tcontradiction\tcontradiction",
      "1\t2\t2e\tletters\t(b)\t(b)\t(p)\t(p)\tIt rains.\tIt is wet.\t"
      "entailment\tentailment\tentailment\tentailment\tentailment\tentailment",
    ],
  )
  _write(
    tmp_path / "MNLI" / "test_matched.tsv",
    [
      "\t".join(mnli_header.split("\t")[:10]),
      "0\t9\t9n\tslate\t(b)\t(b)\t(p)\t(p)\tP.\tH.",
    ],
  )
  qnli = data.load_glue("qnli", "validation", source="local", data_dir=tmp_path)
  assert qnli["question"][:] == ['Who "won"?', "When?"]
  assert qnli["label"][:] == [0, 1]
  assert data.load_glue("qnli", "test", data_dir=tmp_path)["label"][:] == [-1]
  qqp = data.load_glue("qqp", "train", data_dir=tmp_path)
  assert qqp.column_names == ["question1", "question2", "label", "idx"]
  assert qqp["label"][:] == [1, 0] and qqp["idx"][:] == [0, 1]
  assert data.load_glue("qqp", "test", data_dir=tmp_path)["question2"][:] == ["B?"]
  mnli = data.load_glue("mnli", "dev_mismatched", data_dir=tmp_path)
  assert mnli.column_names == ["premise", "hypothesis", "label", "idx"]
  assert mnli["premise"][:] == ["A man sleeps.", "It rains."]
  assert mnli["label"][:] == [2, 0]
  assert mnli.split == datasets.NamedSplit("validation_mismatched")
  test = data.load_glue("mnli", "test_matched", data_dir=tmp_path)
  assert test["hypothesis"][:] == ["H."] and test["label"][:] == [-1]


def test_mrpc_with_and_without_bom_and_stray_quotes(tmp_path):
  lines = [
    "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
    '1\t1\t2\tHe said " yes .\t" Yes , " he said .',
  ]
  _write(tmp_path / "a" / "MRPC" / "dev.tsv", lines, bom=True)
  _write(tmp_path / "b" / "MRPC" / "dev.tsv", lines, bom=False)
  with_bom = data.load_glue("mrpc", "dev", data_dir=tmp_path / "a")
  without = data.load_glue("mrpc", "dev", data_dir=tmp_path / "b")
  assert with_bom[:] == without[:]
  assert with_bom[0]["sentence1"] == 'He said " yes .'
  assert with_bom[0]["sentence2"] == '" Yes , " he said .'


def test_split_and_task_names():
  assert data.get_task("SST-2").name == "sst2"
  assert data.get_task("STS-B").is_regression
  assert data.get_task("diagnostic").name == "ax"
  assert data.canonical_split(data.get_task("mnli"), "dev_matched") == "validation_matched"
  assert data.get_task("mnli").dev_splits == ("validation_matched", "validation_mismatched")
  with pytest.raises(ValueError, match="no split 'validation'"):
    data.canonical_split(data.get_task("mnli"), "validation")
  with pytest.raises(ValueError, match="unknown GLUE task 'squad'"):
    data.get_task("squad")
  for spec in data.GLUE_TASKS.values():
    assert spec.text_keys[0] is not None
    assert (spec.label_names is None) == spec.is_regression

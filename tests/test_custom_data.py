"""Custom CSV/TSV/JSONL data with a column mapping."""

from __future__ import annotations

import json
import pathlib

import datasets
import numpy as np
import pytest

from pats_jax import data, metrics


def _write(folder: pathlib.Path, name: str, text: str | bytes) -> pathlib.Path:
  path = folder / name
  path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
  return path


def test_csv_string_labels_with_quoting(tmp_path):
  path = _write(
    tmp_path,
    "reviews.csv",
    'review,stars,extra\n"Great, really",good,x\nmeh,bad,y\n"He said ""no""",good,z\n',
  )
  dataset, spec = data.load_custom(path, text_column="review", label_column="stars")
  assert spec.name == "reviews" and spec.label_names == ("bad", "good")  # Sorted.
  assert spec.num_labels == 2 and spec.text_keys == ("review", None)
  assert dataset.column_names == ["review", "label", "idx"]
  assert dataset["review"][:] == ["Great, really", "meh", 'He said "no"']
  assert dataset["label"][:] == [1, 0, 1]
  assert dataset.features["label"].names == ["bad", "good"]
  assert metrics.glue_metrics(spec, [1, 0, 0], dataset["label"][:])["accuracy"] == (
    pytest.approx(2 / 3)
  )


def test_tsv_pairs_with_integer_labels_sorted_numerically(tmp_path):
  path = _write(
    tmp_path,
    "pairs.tsv",
    'q\tdoc\ty\nwhat "is"?\tthis\t10\nwho?\tme\t2\nwhy?\tno\t10\nhow?\tso\t-1\n',
  )
  dataset, spec = data.load_custom(
    path, text_column="q", text_pair_column="doc", label_column="y", name="mine"
  )
  assert spec.label_names == ("-1", "2", "10") and spec.is_pair and spec.name == "mine"
  assert dataset["label"][:] == [2, 1, 2, 0]
  assert dataset["q"][:] == ['what "is"?', "who?", "why?", "how?"]  # No quoting in TSV.


def test_jsonl_with_given_label_names_and_ids(tmp_path):
  rows = [
    {"text": "a", "label": "neutral"},
    {"text": "b", "label": 2},
    {"text": "c", "label": "entailment"},
  ]
  path = _write(tmp_path, "nli.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
  names = ["entailment", "neutral", "contradiction"]
  dataset, spec = data.load_custom(
    path, text_column="text", label_column="label", label_names=names, split="validation"
  )
  assert spec.label_names == tuple(names)
  assert dataset["label"][:] == [1, 2, 0]
  assert dataset.split == datasets.NamedSplit("validation")


def test_regression(tmp_path):
  path = _write(
    tmp_path, "scores.jsonl", '{"a": "x", "b": "y", "s": 0.5}\n{"a": "z", "b": "w", "s": "4.25"}\n'
  )
  dataset, spec = data.load_custom(
    path, text_column="a", text_pair_column="b", label_column="s", task_type="regression"
  )
  assert spec.is_regression and spec.label_names is None
  assert spec.best_metric == "combined_score"
  assert dataset.features["label"].dtype == "float32"
  np.testing.assert_allclose(dataset["label"][:], [0.5, 4.25])


def test_unlabelled_prediction_file(tmp_path):
  path = _write(tmp_path, "test.csv", "text\nhello\nworld\n")
  dataset, spec = data.load_custom(
    path, text_column="text", label_column=None, label_names=["neg", "pos"]
  )
  assert dataset["label"][:] == [-1, -1] and spec.label_names == ("neg", "pos")
  with pytest.raises(ValueError, match="needs label_names"):
    data.load_custom(path, text_column="text", label_column=None)


def test_custom_data_tokenizes(tmp_path, minilm_dir):
  import transformers

  path = _write(tmp_path, "t.csv", "s,l\nhello world,yes\ngoodbye,no\n")
  dataset, spec = data.load_custom(path, text_column="s", label_column="l")
  tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir)
  split = data.tokenize(dataset, tokenizer, spec, max_length=16)
  assert split.labels.tolist() == [1, 0]
  assert split.row(0).tolist() == tokenizer("hello world")["input_ids"]


def test_custom_errors(tmp_path):
  good = _write(tmp_path, "good.csv", "text,label\na,x\nb,y\n")
  with pytest.raises(ValueError, match=r"no column\(s\) \['sentence'\]; the columns are"):
    data.load_custom(good, text_column="sentence", label_column="label")
  with pytest.raises(ValueError, match=r"line 3: unknown label 'y'; expected one of \['x', 'z'\]"):
    data.load_custom(good, text_column="text", label_column="label", label_names=["x", "z"])
  with pytest.raises(ValueError, match="task_type must be one of"):
    data.load_custom(good, text_column="text", label_column="label", task_type="ranking")
  with pytest.raises(ValueError, match="line 2: label 'x' is not a number"):
    data.load_custom(good, text_column="text", label_column="label", task_type="regression")
  one_class = _write(tmp_path, "one.csv", "text,label\na,x\nb,x\n")
  with pytest.raises(ValueError, match="at least two"):
    data.load_custom(one_class, text_column="text", label_column="label")
  ragged = _write(tmp_path, "ragged.tsv", "text\tlabel\na\tx\nb\ty\textra\n")
  with pytest.raises(ValueError, match=r"ragged\.tsv, line 3: expected 2 columns .*found 3"):
    data.load_custom(ragged, text_column="text", label_column="label")
  short = _write(tmp_path, "short.csv", "text,label\na,x\nb\n")
  with pytest.raises(ValueError, match=r"short\.csv, line 3: expected 2 columns .*found 1"):
    data.load_custom(short, text_column="text", label_column="label")
  latin = _write(tmp_path, "latin.csv", "text,label\ncaf\xe9,x\n".encode("latin-1"))
  with pytest.raises(ValueError, match=r"latin\.csv: line 2, column 4 .*not valid UTF-8"):
    data.load_custom(latin, text_column="text", label_column="label")
  empty = _write(tmp_path, "empty.csv", "text,label\n")
  with pytest.raises(ValueError, match="no rows"):
    data.load_custom(empty, text_column="text", label_column="label")
  blank_label = _write(tmp_path, "blank.csv", "text,label\na,\n")
  with pytest.raises(ValueError, match="line 2: empty label"):
    data.load_custom(blank_label, text_column="text", label_column="label")
  bad_json = _write(tmp_path, "bad.jsonl", '{"text": "a", "label": 1}\n{"text": \n')
  with pytest.raises(ValueError, match="line 2: not valid JSON"):
    data.load_custom(bad_json, text_column="text", label_column="label")
  with pytest.raises(ValueError, match=r"unsupported file type '\.xlsx'"):
    data.load_custom(_write(tmp_path, "a.xlsx", "x"), text_column="t", label_column="l")
  with pytest.raises(FileNotFoundError, match="not found"):
    data.load_custom(tmp_path / "nope.csv", text_column="t", label_column="l")
  with pytest.raises(ValueError, match="not named"):
    data.load_custom(good, text_column="label", label_column="text")

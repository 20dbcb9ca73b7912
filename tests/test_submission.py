"""GLUE submission files: names, header, label formats, index order."""

from __future__ import annotations

import numpy as np
import pytest

from pats_jax import data
from pats_jax.data import submission


def _read(path):
  lines = path.read_text(encoding="utf-8").splitlines()
  assert lines[0] == "index\tprediction"
  return [line.split("\t") for line in lines[1:]]


def test_file_names():
  assert sorted(submission.SUBMISSION_FILES.values()) == sorted(
    [
      "CoLA.tsv",
      "SST-2.tsv",
      "MRPC.tsv",
      "STS-B.tsv",
      "QQP.tsv",
      "MNLI-m.tsv",
      "MNLI-mm.tsv",
      "QNLI.tsv",
      "RTE.tsv",
      "WNLI.tsv",
      "AX.tsv",
    ]
  )


def test_string_labels_for_nli_tasks(tmp_path):
  path = data.write_glue_submission("mnli", "test_mismatched", [0, 1, 2], tmp_path)
  assert path.name == "MNLI-mm.tsv"
  assert _read(path) == [["0", "entailment"], ["1", "neutral"], ["2", "contradiction"]]
  path = data.write_glue_submission("rte", "test", [1, 0], tmp_path)
  assert _read(path) == [["0", "not_entailment"], ["1", "entailment"]]
  path = data.write_glue_submission("ax", "test", np.array([[0.1, 0.2, 3.0]]), tmp_path)
  assert path.name == "AX.tsv" and _read(path) == [["0", "contradiction"]]


def test_integer_labels_and_index_order(tmp_path):
  path = data.write_glue_submission("wnli", "test", [1, 0, 1], tmp_path, indices=[2, 0, 1])
  assert path.name == "WNLI.tsv"
  assert _read(path) == [["0", "0"], ["1", "1"], ["2", "1"]]
  path = data.write_glue_submission("SST-2", "test", [0, 1], tmp_path)
  assert path.name == "SST-2.tsv" and _read(path) == [["0", "0"], ["1", "1"]]


def test_a_partial_file_is_written_with_a_warning(tmp_path, caplog):
  path = data.write_glue_submission("cola", "test", [0, 1], tmp_path)
  assert _read(path) == [["0", "0"], ["1", "1"]]
  assert "has 1063 rows" in caplog.text


def test_stsb_scores_are_clipped(tmp_path):
  path = data.write_glue_submission("stsb", "test", [-0.5, 2.25, 7.0], tmp_path)
  assert _read(path) == [["0", "0.000"], ["1", "2.250"], ["2", "5.000"]]


@pytest.mark.slow
def test_full_cola_file_from_the_real_test_split(glue_dir, tmp_path):
  test = data.load_glue("cola", "test", source="local", data_dir=glue_dir)
  path = data.write_glue_submission(
    "cola", "test", np.ones(test.num_rows, int), tmp_path, check_count=True
  )
  rows = _read(path)
  assert len(rows) == 1063 and rows[-1] == ["1062", "1"]


def test_submission_errors(tmp_path):
  with pytest.raises(ValueError, match="GLUE test split has 1063 rows"):
    data.write_glue_submission("cola", "test", [0, 1], tmp_path, check_count=True)
  with pytest.raises(ValueError, match="no GLUE submission file"):
    data.write_glue_submission("cola", "validation", [0, 1], tmp_path)
  with pytest.raises(ValueError, match="permutation"):
    data.write_glue_submission("rte", "test", [0, 1], tmp_path, indices=[0, 0])
  with pytest.raises(ValueError, match=r"class ids must be in 0\.\.1"):
    data.write_glue_submission("rte", "test", [0, 2], tmp_path)
  with pytest.raises(ValueError, match="NaN"):
    data.write_glue_submission("stsb", "test", [np.nan], tmp_path)

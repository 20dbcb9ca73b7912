"""Failed writes of a run's files stop it with a clear message and leave what was written intact."""

from __future__ import annotations

import errno
import json
import pathlib

import pytest

from pats_jax.training import validate, writers


def _failing_write(error_number: int):
  def write_text(self, *args, **kwargs):
    raise OSError(error_number, "injected failure", str(self))

  return write_text


def test_results_json_write_failure_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
  path = tmp_path / "results.json"
  writers.write_json(path, {"final": 1.0})
  monkeypatch.setattr(pathlib.Path, "write_text", _failing_write(errno.ENOSPC))
  with pytest.raises(writers.WorkdirWriteError, match=r"results\.json.*rerun the same command"):
    writers.write_json(path, {"final": 2.0})
  assert json.loads(path.read_text()) == {"final": 1.0}
  assert not path.with_suffix(".json.tmp").exists()


def test_metrics_write_failure_is_a_user_facing_error(tmp_path):
  writer = writers.MetricWriter(tmp_path, start_step=0, tensorboard=False)
  writer.write(1, {"loss": 0.5})

  class FullDisk:
    def write(self, text):
      raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
      pass

  writer._file = FullDisk()
  with pytest.raises(writers.WorkdirWriteError, match=r"metrics\.jsonl: No space left") as info:
    writer.write(2, {"loss": 0.4})
  assert isinstance(info.value, validate.ConfigError)  # train.py: one message, exit status 2
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line)["step"] for line in lines] == [1]


def test_unwritable_workdir_for_metrics(tmp_path, monkeypatch):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
  monkeypatch.setattr(pathlib.Path, "write_text", _failing_write(errno.EROFS))
  with pytest.raises(writers.WorkdirWriteError, match=r"metrics\.jsonl"):
    writers.MetricWriter(tmp_path, start_step=0, tensorboard=False)
  assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "loss": 0.5}\n'

"""A workdir remembers its run: identity fields must match on a rerun, free fields may change."""

from __future__ import annotations

import json

import pytest
from _train_helpers import override, tiny_config

from pats_jax.training import workdir as workdir_lib


def _workdir_with_progress(path, config):
  """A workdir as a run leaves it: config.json and a checkpoint folder."""
  path.mkdir()
  (path / "config.json").write_text(json.dumps(workdir_lib.config_json(config)))
  (path / "checkpoints" / "4").mkdir(parents=True)
  return path


def _open(path, config, **kwargs):
  run = workdir_lib.RunDirectory(path, config, **kwargs)
  try:
    run.open()
    run.record_start(resumed_from=4)
  finally:
    run.close()
  return run


def test_changed_identity_fields_are_listed_with_both_values(tmp_path):
  path = _workdir_with_progress(tmp_path / "run", tiny_config())
  before = sorted(p.relative_to(path) for p in path.rglob("*"))
  changed = override(tiny_config(), model="tiny-roberta", batch_size=4, pats__noise_scale=0.1)
  with pytest.raises(workdir_lib.WorkdirError) as error:
    _open(path, changed)
  message = str(error.value)
  assert "  batch_size: saved 8, new 4" in message
  assert "  model: saved 'tiny-bert', new 'tiny-roberta'" in message
  assert "  pats.noise_scale: saved 0.05, new 0.1" in message
  assert "--allow_config_change=batch_size,model,pats.noise_scale" in message
  assert "new --workdir" in message
  assert sorted(p.relative_to(path) for p in path.rglob("*")) == before  # Nothing changed.
  assert json.loads((path / "config.json").read_text())["model"] == "tiny-bert"


def test_free_fields_may_change_and_are_recorded(tmp_path):
  path = _workdir_with_progress(tmp_path / "run", tiny_config())
  changed = override(
    tiny_config(),
    max_steps=10,
    log_every_steps=5,
    pats_stats_every_steps=20,
    checkpoint_every_steps=3,
    progress_bar=True,
    distributed__coordinator_address="host:1234",
  )
  run = _open(path, changed)
  assert set(run.changes) == {
    "max_steps",
    "log_every_steps",
    "pats_stats_every_steps",
    "checkpoint_every_steps",
    "progress_bar",
    "distributed.coordinator_address",
  }
  assert json.loads((path / "config.json").read_text())["max_steps"] == 10
  (record,) = [
    json.loads(line) for line in (path / "config_history.jsonl").read_text().splitlines()
  ]
  assert record["changed"]["max_steps"] == {"saved": 2, "new": 10}
  assert record["resumed_from"] == 4


def test_allowed_changes_pass_and_a_parent_name_covers_its_fields(tmp_path):
  path = _workdir_with_progress(tmp_path / "run", tiny_config())
  changed = override(tiny_config(), num_epochs=3, pats__noise_scale=0.1, pats__beta1=0.9)
  _open(path, changed, allow_config_change=["num_epochs", "pats"])
  history = json.loads((path / "config_history.jsonl").read_text())
  assert history["allowed"] == ["num_epochs", "pats"]
  assert set(history["changed"]) == {"num_epochs", "pats.noise_scale", "pats.beta1"}
  with pytest.raises(workdir_lib.WorkdirError, match="num_epochs: saved 3, new 4"):
    _open(path, override(tiny_config(), num_epochs=4, pats__noise_scale=0.1, pats__beta1=0.9))


def test_unknown_allowed_field_is_refused(tmp_path):
  with pytest.raises(workdir_lib.WorkdirError, match="does not have"):
    workdir_lib.RunDirectory(tmp_path, tiny_config(), allow_config_change=["num_epoch"])


def test_a_field_unknown_to_the_saved_run_is_part_of_its_identity(tmp_path):
  path = _workdir_with_progress(tmp_path / "run", tiny_config())
  saved = json.loads((path / "config.json").read_text())
  del saved["pats"]["beta1"]  # As if the field had been added to the configs since.
  (path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(workdir_lib.WorkdirError, match=r"pats.beta1: saved \(not set\), new 0.85"):
    _open(path, tiny_config())


def test_a_workdir_without_progress_takes_the_new_config(tmp_path):
  path = tmp_path / "run"
  path.mkdir()
  (path / "config.json").write_text(json.dumps(workdir_lib.config_json(tiny_config())))
  _open(path, override(tiny_config(), model="tiny-roberta"))
  assert json.loads((path / "config.json").read_text())["model"] == "tiny-roberta"


def test_free_fields_are_known_fields_of_the_config():
  fields = workdir_lib.flatten(workdir_lib.config_json(tiny_config()))
  for name in workdir_lib.FREE_FIELDS:
    assert any(field == name or field.startswith(name + ".") for field in fields), name
  for identity in ("model", "task", "seed", "batch_size", "learning_rate", "method", "mesh.data"):
    assert identity in fields
    assert not any(
      identity == name or identity.startswith(name + ".") for name in workdir_lib.FREE_FIELDS
    )

"""`python train.py` as a newcomer meets it: a mistake is one message, exit status 2, no workdir.

Each case runs train.py on configs/tiny.py with one wrong override and checks that the run stops
before any work: exit status 2, a short message naming the field and its value, no traceback,
and no workdir left behind.
"""

from __future__ import annotations

import json
import subprocess

import ml_collections
import pytest
from _train_helpers import REPO_ROOT, cache_env, load_config, train_command

from configs import glue
from pats_jax.models import tiny
from pats_jax.training import config_docs, validate

# (overrides, what the message must say). Two CPU devices, so batch sizes must be even.
MISTAKES = {
  "zero batch": ({"batch_size": 0}, "config.batch_size=0"),
  "zero accumulation": ({"grad_accum_steps": 0}, "config.grad_accum_steps=0"),
  "accumulation does not divide the batch": (
    {"batch_size": 12, "grad_accum_steps": 8},
    "config.batch_size=12 is not a multiple of config.grad_accum_steps=8",
  ),
  "micro-batch not divisible by devices": (
    {"batch_size": 6, "grad_accum_steps": 2},
    "batch_size / grad_accum_steps = 6 / 2 is not a multiple of the 2 devices",
  ),
  "eval batch not divisible by devices": (
    {"eval_batch_size": 3},
    "eval_batch_size = 3 is not a multiple of the 2 devices",
  ),
  "mesh larger than the devices": ({"mesh.fsdp": 3}, "config.mesh.fsdp=3"),
  "negative PATS noise": ({"pats.noise_scale": -1}, "config.pats.noise_scale=-1.0"),
  "negative NoisyTune noise": (
    {"method": "noisytune", "noisytune.scale": -0.5},
    "config.noisytune.scale=-0.5",
  ),
  "negative gradient noise": ({"add_noise.eta": -0.1}, "config.add_noise.eta=-0.1"),
  "unknown method": ({"method": "pats2"}, "config.method='pats2'"),
  "unknown normalisation": ({"pats.normalize": "maxmin"}, "config.pats.normalize='maxmin'"),
  "unknown noise schedule": (
    {"pats.noise_schedule": "cosine"},
    "config.pats.noise_schedule='cosine'",
  ),
  "unknown task": ({"task": "squad"}, "config.task='squad'"),
  "zero learning rate": ({"learning_rate": 0.0}, "config.learning_rate=0.0"),
  "warm-up beyond the run": ({"warmup_ratio": 1.5}, "config.warmup_ratio=1.5"),
  "zero max_steps": ({"max_steps": 0}, "config.max_steps=0"),
  "unknown dtype": ({"model_config.dtype": "float64"}, "config.model_config.dtype='float64'"),
  "dropout out of range": (
    {"model_config.hidden_dropout": 1.5},
    "config.model_config.hidden_dropout=1.5",
  ),
  "missing data folder": (
    {"data.data_dir": "no_such_glue_data"},
    "config.data.data_dir='no_such_glue_data'",
  ),
  "missing custom file": (
    {"data.custom.train_file": "no_such_train.csv"},
    "config.data.custom.train_file='no_such_train.csv'",
  ),
  "missing model folder": ({"model": "./no_such_model"}, "config.model='./no_such_model'"),
  "unknown best metric": ({"best_metric": "acuracy"}, "config.best_metric='acuracy'"),
  "unknown remat policy": (
    {"model_config.remat_policy": "dot"},
    "config.model_config.remat_policy='dot': expected one of 'full', 'dots', 'dots_no_batch'",
  ),
  "rank from the previous step": (
    {"pats.statistics": "previous", "pats.normalize": "rank"},
    "config.pats.statistics='previous' cannot rank",
  ),
  "negative scan unroll": (
    {"model_config.scan_layers": True, "model_config.scan_unroll": -1},
    "config.model_config.scan_unroll=-1: expected an integer >= 0",
  ),
  "scan unroll without stacked layers": (
    {"model_config.scan_unroll": 0},
    "config.model_config.scan_unroll=0 applies only to stacked layers: set "
    "--config.model_config.scan_layers=True",
  ),
  "remat policy without remat": (
    {"model_config.remat_policy": "dots"},
    "config.model_config.remat_policy='dots' applies only with remat: set "
    "--config.model_config.remat=True",
  ),
}


def _run(tmp_path, *args: str, env_update: dict[str, str] | None = None, **overrides):
  workdir = tmp_path / "run"
  env = cache_env()
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env.update(env_update or {})
  command = train_command(workdir, **overrides) + list(args)
  result = subprocess.run(
    command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
  )
  return result, workdir


def _assert_one_message(result, workdir, *expected: str) -> str:
  errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert len(errors) == 1, result.stderr
  for text in expected:
    assert text in result.stderr, result.stderr
  assert not workdir.exists()
  return errors[0]


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_config_mistake_is_one_message_and_no_workdir(tmp_path, case):
  overrides, expected = MISTAKES[case]
  result, workdir = _run(tmp_path, **{key.replace(".", "__"): v for key, v in overrides.items()})
  line = _assert_one_message(result, workdir, expected)
  assert len(line) < 400, line


def test_unknown_field_suggests_the_right_one(tmp_path):
  result, workdir = _run(tmp_path, "--config.epochs=1")
  line = _assert_one_message(result, workdir, "--config.epochs=1", "num_epochs")
  assert "\\n" not in line


def test_value_of_the_wrong_type(tmp_path):
  result, workdir = _run(tmp_path, "--config.batch_size=eight")
  _assert_one_message(result, workdir, "--config.batch_size=eight")


def test_missing_glue_says_where_it_looked_and_how_to_get_it(tmp_path):
  env = {"GLUE_DIR": "", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
  result, workdir = _run(tmp_path, env_update=env, data__data_dir="")
  _assert_one_message(
    result,
    workdir,
    "Could not read GLUE task 'rte'",
    str(tmp_path / "glue_data"),
    "https://github.com/nyu-mll/GLUE-baselines",
    "nyu-mll/glue",
  )
  assert result.stderr.count(str(tmp_path / "glue_data")) == 1


def test_unknown_best_metric_lists_the_tasks_metrics(tmp_path):
  result, workdir = _run(tmp_path, task="mrpc", best_metric="combined")
  _assert_one_message(
    result,
    workdir,
    "config.best_metric='combined'",
    "task 'mrpc' reports 'accuracy', 'f1', 'combined_score'",
    "did you mean 'combined_score'?",
  )


def test_best_metric_of_custom_data_is_checked_once_the_data_is_read(tmp_path):
  rows = "".join(f"text {i},{'abc'[i % 3]}\n" for i in range(32))
  for name in ("train.csv", "dev.csv"):
    (tmp_path / name).write_text("text,label\n" + rows)
  result, workdir = _run(
    tmp_path,
    data__custom__train_file=tmp_path / "train.csv",
    data__custom__dev_file=tmp_path / "dev.csv",
    best_metric="f1",
  )
  _assert_one_message(result, workdir, "config.best_metric='f1'", "'accuracy', 'macro_f1'")


def test_data_smaller_than_one_batch(tmp_path):
  result, workdir = _run(tmp_path, batch_size=128)  # The synthetic RTE has 64 examples.
  _assert_one_message(
    result, workdir, "has 64 examples, fewer than one micro-batch", "--config.batch_size"
  )


def test_data_too_small_for_one_accumulated_update(tmp_path):
  result, workdir = _run(tmp_path, batch_size=80, grad_accum_steps=2, num_epochs=1)
  _assert_one_message(result, workdir, "1 micro-batch(es) of 40", "config.grad_accum_steps=2")


def test_unsupported_model_config_is_one_line(tmp_path):
  folder = tiny.write_tiny_checkpoint(tmp_path / "model")
  config_file = folder / "config.json"
  config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "model_type": "gpt2"}))
  result, workdir = _run(tmp_path, model=folder)
  line = _assert_one_message(result, workdir, str(config_file), "model_type 'gpt2'")
  lines = result.stderr.splitlines()
  assert lines[lines.index(line) + 1].startswith("(python train.py --help"), result.stderr


def test_print_config_lists_every_field_with_its_description(tmp_path):
  result, workdir = _run(tmp_path, "--print_config", batch_size=4)
  assert result.returncode == 0, result.stderr
  lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
  fields = config_docs.leaves(load_config(REPO_ROOT / "configs/tiny.py"))
  assert [line.split(" = ")[0] for line in lines] == list(
    config_docs.field_docs(REPO_ROOT / "configs/glue.py")
  )
  assert len(lines) == len(fields)
  assert all("  # " in line for line in lines)
  assert any(line.startswith("batch_size = 4 ") and "Global batch" in line for line in lines)
  assert not workdir.exists()


def test_help_points_to_print_config():
  result = subprocess.run(
    [*train_command(REPO_ROOT / "unused")[:2], "--help"],
    env=cache_env(),
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  assert "--print_config" in result.stdout and "--config.<field>=<value>" in result.stdout


def test_every_config_field_is_documented_and_checked():
  fields = set(config_docs.leaves(glue.get_config()))
  assert fields == set(config_docs.field_docs(REPO_ROOT / "configs/glue.py"))
  assert fields - {"task"} <= set(validate.CHECKS)
  for path in ("configs/default.py", "configs/tiny.py", "configs/glue.py"):
    validate.check_config(load_config(REPO_ROOT / path))


def test_check_config_accepts_a_config_without_optional_fields():
  config = load_config(REPO_ROOT / "configs/tiny.py").to_dict()
  del config["tag"], config["pats"]["ema_dtype"]
  validate.check_config(ml_collections.ConfigDict(config))

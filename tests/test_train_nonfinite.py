"""A non-finite loss or gradient stops the run and keeps the last good checkpoint, or is skipped;
what is logged for each step is what the optimizer applied."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import tiny_config, use_compilation_cache

from pats_jax.data import synthetic
from pats_jax.training import optimizers, steps, trainer


@jax.custom_vjp
def _infinite_gradient(x):
  """The identity, whose gradient is infinite: a finite loss with non-finite gradients."""
  return x


_infinite_gradient.defvjp(lambda x: (x, None), lambda _, g: (g * jnp.inf,))


class _Linear:
  """A stand-in for the Flax classifier: logits = mean token features @ kernel + bias."""

  def __init__(self, *, infinite_gradient: bool):
    self.infinite_gradient = infinite_gradient

  def apply(self, variables, input_ids, attention_mask, token_type_ids, **unused):
    del unused
    params = variables["params"]
    features = jnp.stack([input_ids, attention_mask, token_type_ids], -1).astype(jnp.float32)
    logits = features.mean(1) @ params["kernel"] + params["bias"]
    return _infinite_gradient(logits) if self.infinite_gradient else logits


def _records(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [record for record in map(json.loads, lines) if "loss" in record]


def _plain(tree):
  """PRNG keys as their data, so that trees compare with `==`."""
  return jax.tree.map(
    lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x,
    tree,
  )


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_finite_loss_with_nonfinite_gradients_is_counted_and_skipped(accumulate):
  config = tiny_config(
    arg="method=pats", apply_if_finite=True, grad_accum_steps=accumulate, warmup_ratio=0.0
  )
  optimizer = optimizers.make_optimizer(config, num_updates=8)
  good, bad = (
    jax.jit(
      steps.make_train_step(
        _Linear(infinite_gradient=poisoned),
        optimizer,
        seed=0,
        regression=False,
        skip_nonfinite=True,
      )
    )
    for poisoned in (False, True)
  )
  rng = np.random.default_rng(0)
  params = {"kernel": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "bias": jnp.zeros(2)}
  batch = {
    "input_ids": jnp.asarray(rng.integers(0, 50, (4, 6)), jnp.int32),
    "attention_mask": jnp.ones((4, 6), jnp.int32),
    "token_type_ids": jnp.zeros((4, 6), jnp.int32),
    "labels": jnp.asarray([0, 1, 1, 0], jnp.int32),
  }
  state = steps.init_state(params, optimizer.tx)
  state, _ = good(state, batch)
  before = state
  for consecutive in (1, 2):
    state, metrics = bad(state, batch)
    assert np.isfinite(metrics["loss"]) and not np.isfinite(metrics["grad_norm"])
    assert int(metrics["skipped"]) == 1 and float(metrics["update_norm"]) == 0
    assert int(metrics["nonfinite_steps"]) == consecutive
    assert int(metrics["consecutive_nonfinite"]) == consecutive
    # Nothing moved: parameters, PATS EMAs and key, Adam, the count, the accumulator.
    jax.tree.map(np.testing.assert_array_equal, _plain(state.params), _plain(before.params))
    jax.tree.map(np.testing.assert_array_equal, _plain(state.opt_state), _plain(before.opt_state))
  # The next finite micro-step: with accumulation, it completes the first update in place of
  # the skipped ones; without, it makes the second update, at the schedule's second value.
  state, metrics = good(state, batch)
  assert int(metrics["skipped"]) == 0 and int(metrics["consecutive_nonfinite"]) == 0
  assert float(metrics["update_norm"]) > 0
  updates_before = 1 if accumulate == 1 else 0
  assert float(metrics["learning_rate"]) == pytest.approx(
    float(optimizer.learning_rate(updates_before))
  )
  assert float(metrics["noise_scale"]) == pytest.approx(
    float(optimizer.noise_scale(updates_before))
  )
  assert int(optimizers.applied_updates(state.opt_state)) == updates_before + 1


def _glue_with_nan_scores(folder, rows=(5, 40)):
  """A tiny GLUE folder whose STS-B training file has NaN scores on a few rows."""
  synthetic.write_synthetic_glue(folder)
  path = folder / "STS-B" / "train.tsv"
  lines = path.read_text().splitlines()
  for row in rows:
    fields = lines[row + 1].split("\t")
    fields[-1] = "nan"
    lines[row + 1] = "\t".join(fields)
  path.write_text("\n".join(lines) + "\n")
  return folder


def _config(data_dir, **values):
  return tiny_config(
    arg="task=stsb,method=pats",
    **{
      "data.data_dir": str(data_dir),
      "max_steps": -1,
      "num_epochs": 1,
      "checkpoint_every_steps": 1,
      "eval_every_steps": 0,
      **values,
    },
  )


@pytest.mark.slow
def test_nonfinite_loss_stops_with_the_last_good_checkpoint(tmp_path):
  use_compilation_cache()
  config = _config(_glue_with_nan_scores(tmp_path / "glue"))
  with pytest.raises(trainer.NonFiniteLossError, match="last good checkpoint") as error:
    trainer.train_and_evaluate(config, tmp_path / "run")
  message = str(error.value)
  assert "apply_if_finite" in message
  records = [
    json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  ]
  first_bad = next(r["step"] for r in records if r.get("loss") is None and "loss" in r)
  saved = sorted(
    int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()
  )
  assert saved and max(saved) < first_bad
  assert f"step {max(saved)}" in message
  assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.slow
def test_apply_if_finite_skips_nonfinite_steps(tmp_path):
  use_compilation_cache()
  config = _config(
    _glue_with_nan_scores(tmp_path / "glue"), apply_if_finite=True, checkpoint_every_steps=0
  )
  results = trainer.train_and_evaluate(config, tmp_path / "run")
  assert results["nonfinite_steps"] >= 1
  assert all(np.isfinite(value) for value in results["final"]["metrics"].values())
  records = [
    json.loads(line)
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    if "loss" in line
  ]
  assert all(np.isfinite(r["param_norm"]) for r in records)


@pytest.mark.slow
def test_a_finite_loss_with_nonfinite_gradients_stops_the_run(tmp_path, monkeypatch):
  use_compilation_cache()
  task_loss = steps.task_loss
  monkeypatch.setattr(
    steps,
    "task_loss",
    lambda logits, *args, **kwargs: task_loss(_infinite_gradient(logits), *args, **kwargs),
  )
  config = tiny_config(
    apply_if_finite=True, max_consecutive_nonfinite=3, max_steps=-1, checkpoint_every_steps=0
  )
  with pytest.raises(trainer.NonFiniteLossError, match="3 consecutive steps had a non-finite"):
    trainer.train_and_evaluate(config, tmp_path / "run")
  records = _records(tmp_path / "run")
  assert [r["step"] for r in records] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) and r["skipped"] == 1 for r in records)
  assert [r["nonfinite_steps"] for r in records] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("accumulate", [1, 2])
def test_logged_schedules_are_those_applied_around_skipped_steps(tmp_path, accumulate):
  use_compilation_cache()
  config = _config(
    _glue_with_nan_scores(tmp_path / "glue"),
    apply_if_finite=True,
    checkpoint_every_steps=0,
    grad_accum_steps=accumulate,
  )
  results = trainer.train_and_evaluate(config, tmp_path / "run")
  records = _records(tmp_path / "run")
  assert [r["step"] for r in records] == list(range(1, results["steps"] + 1))
  nonfinite = [int(r["loss"] is None) for r in records]  # The NaN scores' micro-batches.
  assert 1 <= sum(nonfinite) < len(records) // 2
  optimizer = optimizers.make_optimizer(config, results["steps"] // accumulate)
  finite = 0  # Finite micro-steps so far: every `accumulate` of them make one update.
  for record, skipped in zip(records, nonfinite, strict=True):
    update = finite // accumulate  # The update this micro-step goes into.
    finite += 1 - skipped
    last_applied = max(finite // accumulate - 1, 0)
    for name, value in (
      ("learning_rate", optimizer.learning_rate(update)),
      ("noise_scale", optimizer.noise_scale(update)),
      ("pats/noise_scale", optimizer.noise_scale(last_applied)),
    ):
      assert record[name] == pytest.approx(float(value), rel=1e-6, abs=1e-12), (record, name)
  first_skipped = nonfinite.index(1)
  assert any(r["update_norm"] > 0 for r in records[first_skipped + 1 :])  # Training went on.
  assert [r["skipped"] for r in records] == nonfinite

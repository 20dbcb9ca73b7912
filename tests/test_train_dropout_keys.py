"""The train step's dropout keys: `config.dropout_key_impl` picks their `jax.random`
implementation; every implementation drops at the configured rate, and the masks are a function
of the seed and the step (so a resumed run draws the same ones)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _train_helpers import tiny_config

from pats_jax.training import optimizers, steps, validate

RATE = 0.25
UNITS = 65_536  # The kept fraction's standard error: sqrt(0.25 * 0.75 / 65536) < 0.002.


class _KeptFraction(nn.Module):
  """Regression output: the fraction of `UNITS` ones that `nn.Dropout(RATE)` keeps, times a
  trainable scale of 1 (so the squared-error loss against 0 is that fraction squared)."""

  @nn.compact
  def __call__(self, input_ids, attention_mask, token_type_ids, deterministic: bool):
    del attention_mask, token_type_ids
    scale = self.param("scale", nn.initializers.ones, ())
    dropped = nn.Dropout(RATE)(jnp.ones(UNITS), deterministic=deterministic)
    kept = jnp.mean(dropped != 0) * scale
    return jnp.broadcast_to(kept, (input_ids.shape[0], 1))


def _kept_fraction(impl: str, seed: int, step: int) -> float:
  optimizer = optimizers.make_optimizer(tiny_config(arg="method=plain"), num_updates=4)
  train_step = jax.jit(
    steps.make_train_step(
      _KeptFraction(), optimizer, seed=seed, regression=True, dropout_key_impl=impl
    )
  )
  state = steps.init_state({"scale": jnp.ones(())}, optimizer.tx)._replace(
    step=jnp.asarray(step, jnp.int32)
  )
  batch = {
    "input_ids": jnp.zeros((2, 4), jnp.int32),
    "attention_mask": jnp.ones((2, 4), jnp.int32),
    "token_type_ids": jnp.zeros((2, 4), jnp.int32),
    "labels": jnp.zeros(2, jnp.float32),
  }
  _, metrics = train_step(state, batch)
  return float(np.sqrt(metrics["loss"]))


@pytest.mark.parametrize("impl", optimizers.KEY_IMPLS)
def test_every_dropout_key_implementation_drops_at_the_rate_and_repeats_per_step(impl):
  first = _kept_fraction(impl, seed=0, step=3)
  assert abs(first - (1 - RATE)) < 0.01
  assert _kept_fraction(impl, seed=0, step=3) == first  # Same seed and step: same masks.
  assert _kept_fraction(impl, seed=0, step=4) != first  # Another step: other masks.
  assert _kept_fraction(impl, seed=1, step=3) != first  # Another seed: other masks.


def test_the_implementation_changes_the_masks_and_threefry_is_the_default():
  fractions = {impl: _kept_fraction(impl, seed=0, step=0) for impl in optimizers.KEY_IMPLS}
  assert fractions["threefry2x32"] != fractions["rbg"]
  assert tiny_config().dropout_key_impl == "threefry2x32"


def test_an_unknown_dropout_key_implementation_is_refused_by_name():
  config = tiny_config()
  config.dropout_key_impl = "philox"
  with pytest.raises(validate.ConfigError, match="dropout_key_impl") as error:
    validate.check_config(config)
  assert "rbg" in str(error.value)

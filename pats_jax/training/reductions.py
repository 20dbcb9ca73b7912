"""Reductions over every leaf of a pytree, per leaf or as one reduction over the leaves joined.

A pytree's global L2 norm and its "all finite" test are usually taken leaf by leaf: a
reduction per leaf, then one over the per-leaf results. On XLA:GPU each of those is a kernel
launch, one or two per leaf, and a BERT-base train step has 201 leaves (25 with stacked
layers). Joined, every element goes into one float32 vector and one reduction, which XLA
compiles as a few kernels however many leaves there are. The test gives the same answer; a
norm differs only by the order of its float32 additions. Joining needs every leaf whole on
each device: under FSDP it would gather the sharded leaves, so sharded runs keep the per-leaf
form (`steps.build_run_steps`).

  ‖tree‖₂ = sqrt(Σ_leaves Σ_elements x²)

`clip_by_global_norm` is optax's transformation of the same name with a choice of the two
forms: updates u become u · c / ‖u‖₂ when ‖u‖₂ >= c, and are left as they are below c.

References: optax `clip_by_global_norm`, `optax.tree.norm`; Pascanu et al., "On the difficulty
of training recurrent neural networks", ICML 2013 (clipping by the global norm).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def joined(tree: Any) -> jax.Array:
  """Every element of `tree`'s leaves in one float32 vector."""
  return jnp.concatenate([jnp.ravel(leaf).astype(jnp.float32) for leaf in jax.tree.leaves(tree)])


def all_finite(tree: Any, *, grouped: bool = False) -> jax.Array:
  """True (a bool scalar) when every element of every leaf of `tree` is finite.

  `grouped`: one reduction over the joined leaves (`joined`) rather than one per leaf.
  """
  if grouped:
    return jnp.all(jnp.isfinite(joined(tree)))
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def global_norm(tree: Any, *, grouped: bool = False) -> jax.Array:
  """‖tree‖₂ = sqrt(Σ over every element x of every leaf of x²).

  `grouped`: one float32 reduction over the joined leaves, instead of `optax.tree.norm`'s one
  or two kernels per leaf (a per-leaf sum of squares in the leaf's dtype, then the sum of
  those). For float32 leaves the values differ only by the order of the additions.
  """
  if grouped:
    return jnp.sqrt(jnp.sum(jnp.square(joined(tree))))
  return optax.tree.norm(tree)


def clip_by_global_norm(max_norm: float, *, grouped: bool = False) -> optax.GradientTransformation:
  """Scales the updates down to global norm `max_norm` when their norm reaches it.

  Without `grouped` this is `optax.clip_by_global_norm(max_norm)`. With it, the norm is
  `global_norm(updates, grouped=True)` and the rule is optax's: below `max_norm` the updates
  pass unchanged (bit for bit), at or above it each leaf t becomes (t / ‖u‖₂) · max_norm. The
  state is optax's (`optax.ClipByGlobalNormState`, empty), so a checkpoint of either form
  restores into the other.
  """
  if not grouped:
    return optax.clip_by_global_norm(max_norm)

  def init_fn(params: Any) -> optax.ClipByGlobalNormState:
    del params
    return optax.ClipByGlobalNormState()

  def update_fn(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
    del params
    norm = global_norm(updates, grouped=True)
    below = norm < max_norm

    def clip(leaf: jax.Array) -> jax.Array:
      return jax.lax.select(below, leaf, (leaf / norm.astype(leaf.dtype)) * max_norm)

    return jax.tree.map(clip, updates), state

  return optax.GradientTransformation(init_fn, update_fn)

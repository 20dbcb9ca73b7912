"""Building blocks every family shares: activations, initialisers, dense, embedding and LayerNorm
layers with logical axis names, and the attention kernel with its XLA and cuDNN paths.

Every family looks its tokens up with `embed` (`GatheredEmbed`): under FSDP it gathers the
table and gives rows-split hidden states (see `sharding.py`).

Attention, per head (queries q_t, keys k_s, values v_s, padding keys masked out):

  a_t = Σ_s softmax_s(scale · q_t·k_s + bias_ts) v_s,    scale = 1/√d by default

`attend` picks the implementation:

  * training with attention-probability dropout: Flax's explicit softmax
    (`nn.dot_product_attention`, XLA), the only path with dropout on the probabilities;
  * "cudnn": `jax.nn.dot_product_attention(implementation="cudnn")` (flash attention; padding
    given as key lengths, so batches must be right-padded); a 1-token query, which cuDNN does
    not take, goes through XLA;
  * "xla": `jax.nn.dot_product_attention(implementation="xla")` with a boolean key mask.

A caller may restrict the keys further with a boolean `mask` `[batch or 1, 1, q_len, k_len]`
(e.g. a sliding window: ModernBERT's local layers). It is ANDed with the padding on the XLA
paths and passed to cuDNN, which adds it as a large negative bias; cuDNN's own sliding window
(`local_window_size`) is one-sided when not causal, so a two-sided window is given this way.

`resolve_attention` turns the user's knob ("auto", "xla", "cudnn") into one of the last two.

References:
  Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Dao et al., "FlashAttention",
  NeurIPS 2022; Flax "Scale up Flax modules" (logical axis names); transformers'
  `activations.py` (what each `hidden_act` name means).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from pats_jax.models import sharding as sh

Dtype = Any
ATTENTION_CHOICES = ("auto", "xla", "cudnn")

# HF activation names (`hidden_act`) -> functions. HF "gelu" is the exact erf form.
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "gelu": lambda x: nn.gelu(x, approximate=False),
  "gelu_python": lambda x: nn.gelu(x, approximate=False),
  "gelu_new": lambda x: nn.gelu(x, approximate=True),
  "gelu_fast": lambda x: nn.gelu(x, approximate=True),
  "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
  "relu": nn.relu,
  "silu": nn.silu,
  "swish": nn.silu,
  "tanh": jnp.tanh,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation HF means by `name` (e.g. `hidden_act`)."""
  if name not in ACTIVATIONS:
    raise ValueError(f"hidden_act {name!r} is not supported; supported: {sorted(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def resolve_attention(attention: str, dtype: Dtype, head_dim: int) -> str:
  """The `jax.nn.dot_product_attention` implementation for the knob `attention`.

  "auto" is "cudnn" on an Ampere-or-newer GPU with a 16-bit compute dtype and a head
  width cuDNN flash attention supports (multiple of 8, at most 128), else "xla".
  """
  if attention not in ATTENTION_CHOICES:
    raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {attention!r}")
  if attention != "auto":
    return attention
  if jax.default_backend() != "gpu":
    return "xla"
  if jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    return "xla"
  if head_dim % 8 or head_dim > 128:
    return "xla"
  capability = getattr(jax.devices()[0], "compute_capability", "0")
  return "cudnn" if float(capability) >= 8.0 else "xla"


def normal_init(stddev: float, axes: tuple[str, ...]):
  """N(0, stddev²) initialiser carrying logical axis names (HF's `initializer_range`)."""
  return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


def zeros_init(axes: tuple[str, ...]):
  """Zeros initialiser carrying logical axis names (biases)."""
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def dense(
  features: int,
  axes: tuple[str, str],
  *,
  stddev: float,
  dtype: Dtype,
  param_dtype: Dtype,
  name: str,
  use_bias: bool = True,
) -> nn.Dense:
  """A Dense layer: kernel `[in, out]` with logical names `axes`, bias `[out]` named `axes[1]`."""
  return nn.Dense(
    features,
    use_bias=use_bias,
    dtype=dtype,
    param_dtype=param_dtype,
    kernel_init=normal_init(stddev, axes),
    bias_init=zeros_init(axes[1:]),
    name=name,
  )


class GatheredEmbed(nn.Embed):
  """`nn.Embed` that looks up in the whole table, its output pinned to rows-split hidden states.

  Under FSDP the table `[rows, E]` is split over "embed"; it is gathered first, as every other
  weight is, so that the rows-split ids give rows-split vectors `[batch, length, E]`
  (`sharding.HIDDEN_AXES`). Looking up in the split table would give embed-split vectors that
  XLA can only re-split by replicating them ("Involuntary full rematerialization"). Outside
  `sharding.activation_sharding` it is `nn.Embed`: same parameters, same values.
  """

  def __call__(self, inputs: jax.Array) -> jax.Array:
    (table,) = self.promote_dtype(self.embedding, dtype=self.dtype, inexact=False)
    table = sh.gathered(table)
    if self.num_embeddings == 1:
      vectors = jnp.broadcast_to(table, (*inputs.shape, self.features))
    else:
      vectors = jnp.take(table, inputs, axis=0)
    return sh.constrain(vectors, sh.HIDDEN_AXES)


def embed(
  num_embeddings: int,
  features: int,
  axes: tuple[str, str],
  *,
  stddev: float,
  dtype: Dtype,
  param_dtype: Dtype,
  name: str,
) -> GatheredEmbed:
  """An embedding table `[num_embeddings, features]` with logical names `axes`, N(0, stddev²);
  the lookup every family's embeddings use (`GatheredEmbed`)."""
  return GatheredEmbed(
    num_embeddings,
    features,
    dtype=dtype,
    param_dtype=param_dtype,
    embedding_init=normal_init(stddev, axes),
    name=name,
  )


def layer_norm(
  epsilon: float,
  dtype: Dtype,
  param_dtype: Dtype,
  name: str,
  axis_name: str = sh.EMBED,
  use_bias: bool = True,
) -> nn.LayerNorm:
  """LayerNorm over the last axis (named `axis_name`); statistics in float32, exact variance."""
  return nn.LayerNorm(
    epsilon=epsilon,
    dtype=dtype,
    param_dtype=param_dtype,
    use_bias=use_bias,
    use_fast_variance=False,
    scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis_name,)),
    bias_init=zeros_init((axis_name,)),
    name=name,
  )


class HeadProjection(nn.Module):
  """The parameters of one head-split projection (a query, key or value), not applied.

  Named and initialised as `nn.DenseGeneral((heads, head_dim))` names and initialises them:
  `kernel` `[E, heads, head_dim]` (embed, heads, kv), N(0, stddev²), and `bias`
  `[heads, head_dim]`, zeros. Calling it returns `(kernel, bias)`, so that several projections
  of one input run as one matmul (`project_heads`).
  """

  features: int
  heads: int
  head_dim: int
  stddev: float
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param(
      "kernel",
      normal_init(self.stddev, (sh.EMBED, sh.HEADS, sh.KV)),
      (self.features, self.heads, self.head_dim),
      self.param_dtype,
    )
    bias = self.param(
      "bias", zeros_init((sh.HEADS, sh.KV)), (self.heads, self.head_dim), self.param_dtype
    )
    return kernel, bias


_JOINED_PROJECTIONS: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
  "joined_projections", default=None
)


@contextlib.contextmanager
def joined_projections(joined: bool) -> Iterator[None]:
  """Makes `project_heads` join (True) or not join (False) its projections while tracing
  inside the block; the trainer sets it from the devices it compiles for
  (`steps.build_run_steps`)."""
  token = _JOINED_PROJECTIONS.set(joined)
  try:
    yield
  finally:
    _JOINED_PROJECTIONS.reset(token)


def projections_joined() -> bool:
  """Whether `project_heads` joins: the enclosing `joined_projections`, else whether JAX's
  default backend is a GPU."""
  joined = _JOINED_PROJECTIONS.get()
  return jax.default_backend() == "gpu" if joined is None else joined


def project_heads(
  x: jax.Array, projections: list[tuple[jax.Array, jax.Array]], dtype: Dtype
) -> list[jax.Array]:
  """Head-split projections of one input, y_i = x W_i + b_i, each `[..., N, d]` in `dtype`.

  With kernels W_i `[E, N, d]` and biases b_i `[N, d]` of one shape, joined
  (`projections_joined`, for XLA:GPU) they run as one matmul over the stacked kernels,

    Y = x · stack(W_1, ..., W_n) + stack(b_1, ..., b_n)    `[..., n, N, d]`,   y_i = Y[..., i, :, :]

  each output element the same dot product as a separate `nn.DenseGeneral` computes. The
  training step then has one matmul for the outputs, one for the input's gradient, one for
  the weights' gradient and one reduction for the biases' gradient, instead of one of each
  per projection: on a GPU every one is a kernel. Not joined, each runs as its own matmul: the
  TPU compiler estimates the BERT-base step at 34.41 ms joined against 33.02 ms separate
  (v5e, 32 sequences per chip; `docs/performance.md`).
  """
  if projections_joined():
    kernel = jnp.stack([k for k, _ in projections]).astype(dtype)  # [n, E, N, d]
    bias = jnp.stack([b for _, b in projections]).astype(dtype)  # [n, N, d]
    joined = jnp.einsum("...e,nehd->...nhd", x.astype(dtype), kernel) + bias
    return [joined[..., i, :, :] for i in range(len(projections))]
  x = x.astype(dtype)
  return [
    jnp.einsum("...e,ehd->...hd", x, k.astype(dtype)) + b.astype(dtype) for k, b in projections
  ]


def first_position(x: jax.Array) -> jax.Array:
  """`[batch, L, ...]` -> `[batch, ...]`: the first position, without a length axis of 1.

  A layer that computes the first token only (`first_token_only`) runs its feed-forward block
  on `[batch, E]` and adds the length axis back at its output. With a `[batch, 1, E]` block
  after unrolled stacked layers (`scan_unroll`), XLA's GPU compiler laid every activation of
  the training step out with the batch axis minor, where its fused LayerNorm kernels do not
  apply (BERT-base, stacked and unrolled: 934 kernels per step against 787 this way). The
  values are the same, and so are the dropout masks: `jax.random` draws element i of a shape
  by i's flat index, which the axis of 1 does not change.
  """
  return x[:, 0]


class KeyPadding(NamedTuple):
  """Which keys are real tokens, in the two forms the attention kernels take.

  Attributes:
    mask: bool `[batch, 1, 1, length]`, True at real tokens (XLA's form).
    lengths: int32 `[batch]`, the number of real tokens (cuDNN's form: right padding).
  """

  mask: jax.Array
  lengths: jax.Array

  @classmethod
  def from_attention_mask(cls, attention_mask: jax.Array) -> KeyPadding:
    """From HF's `attention_mask` `[batch, length]` (1 = token, 0 = padding)."""
    keep = attention_mask.astype(jnp.bool_)
    return cls(keep[:, None, None, :], keep.sum(axis=1, dtype=jnp.int32))


def attend(
  module: nn.Module,
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  padding: KeyPadding,
  *,
  dropout_rate: float,
  deterministic: bool,
  implementation: str,
  dtype: Dtype,
  bias: jax.Array | None = None,
  scale: float | None = None,
  mask: jax.Array | None = None,
) -> jax.Array:
  """Multi-head attention `[batch, q_len, heads, d]` x `[batch, k_len, heads, d]` -> queries'.

  Args:
    module: the calling module (draws the "dropout" rng when training with dropout).
    query, key, value: `[batch, length, heads, head_dim]`.
    padding: the keys that are real tokens.
    dropout_rate: dropout on the attention probabilities while training.
    deterministic: True disables dropout.
    implementation: "xla" or "cudnn" (from `resolve_attention`).
    dtype: compute dtype of the explicit-softmax path (its softmax runs in float32).
    bias: added to the scaled logits, broadcastable to `[batch, heads, q_len, k_len]`.
    scale: logit scale; None is 1/√head_dim.
    mask: bool, broadcastable to `[batch, 1, q_len, k_len]`: True where a query may attend a
      key (besides the padding); None allows every real key. Every query must keep at least
      one real key, else its row is a uniform average (XLA) or undefined (cuDNN).

  Returns:
    `[batch, q_len, heads, head_dim]`.
  """
  keys = padding.mask if mask is None else jnp.logical_and(padding.mask, mask)
  if dropout_rate > 0.0 and not deterministic:
    if scale is not None:  # Flax divides the queries by √d itself.
      query = query * jnp.asarray(scale * math.sqrt(query.shape[-1]), query.dtype)
    return nn.dot_product_attention(
      query,
      key,
      value,
      bias=bias,
      mask=keys,
      dropout_rng=module.make_rng("dropout"),
      dropout_rate=dropout_rate,
      deterministic=False,
      dtype=dtype,
      force_fp32_for_softmax=True,
    )
  if implementation == "cudnn" and query.shape[1] > 1:
    # cuDNN takes padding as lengths: requires right-padded batches. A 1-token query (the
    # last layer's first token) is not a flash-attention shape (JAX 0.11 on an H200:
    # "Unsupported sequence length Q 1"): XLA does that single row below.
    return jax.nn.dot_product_attention(
      query,
      key,
      value,
      bias=bias,
      mask=mask,
      scale=scale,
      key_value_seq_lengths=padding.lengths,
      implementation="cudnn",
    )
  return jax.nn.dot_product_attention(
    query, key, value, bias=bias, scale=scale, mask=keys, implementation="xla"
  )

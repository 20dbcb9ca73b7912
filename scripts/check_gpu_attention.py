r"""GPU check: cuDNN flash attention against XLA attention, in the model, on right-padded batches.

  python scripts/check_gpu_attention.py            # on a GPU (exits 2 without one)

For a random BERT of all-MiniLM-L6-v2's shape (6 layers, 12 heads of 32) and of BERT-base's,
in bfloat16, it compares the logits and the gradient of the summed logits with respect to
the parameters between `attention="cudnn"` and `attention="xla"`, on batches with random
lengths (right padding). The default logits path runs the last layer with a 1-token query
(`first_token_only`), so this also checks cuDNN with a single query row;
`return_hidden=True` checks the full-length query. Prints ‖a − b‖ / ‖b‖ per quantity and
fails (exit 1) above `--tolerance` (bf16 operands: 1e-3 to 1e-2 is rounding).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from pats_jax import models
from pats_jax.models import testing as model_testing

SHAPES = {
  "minilm": {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
  },
  "bert-base": {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
  },
}


def relative_error(a: jax.Array, b: jax.Array) -> float:
  """‖a − b‖ / ‖b‖ in float64 (of flattened trees)."""
  a = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(a)])
  b = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(b)])
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare(name: str, folder: str, *, batch: int, length: int, seed: int) -> dict[str, float]:
  """Relative errors of cuDNN vs XLA: logits, full hidden states, parameter gradients."""
  loaded = {
    impl: models.load(folder, num_labels=2, dtype=jnp.bfloat16, attention=impl)
    for impl in ("cudnn", "xla")
  }
  params = loaded["xla"].params
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, length + 1, batch)
  lengths[0] = length
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  ids = jnp.asarray(rng.integers(1000, 30000, (batch, length)) * mask, jnp.int32)
  mask = jnp.asarray(mask)
  types = jnp.zeros_like(ids)
  out = {}
  for impl, pretrained in loaded.items():
    module = pretrained.module

    def summed(p, module=module):
      return module.apply({"params": p}, ids, mask, types).sum()

    logits = jax.jit(lambda p, module=module: module.apply({"params": p}, ids, mask, types))
    hidden = jax.jit(
      lambda p, module=module: module.apply({"params": p}, ids, mask, types, return_hidden=True)
    )
    valid = mask[..., None].astype(jnp.float32)  # Padded positions' states are unspecified.
    out[impl] = {
      "logits (1-token query)": logits(params),
      "hidden (full query)": hidden(params)[1].astype(jnp.float32) * valid,
      "grad": jax.jit(jax.grad(summed))(params),
    }
  errors = {key: relative_error(out["cudnn"][key], out["xla"][key]) for key in out["xla"]}
  for key, error in errors.items():
    print(f"{name:9s} batch {batch} length {length}: {key:24s} rel. error {error:.2e}")
  return errors


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--tolerance", type=float, default=2e-2)
  args = parser.parse_args()
  if jax.default_backend() != "gpu":
    print(f"needs a GPU; the backend is {jax.default_backend()}")
    return 2
  print(f"jax {jax.__version__}, device {jax.devices()[0].device_kind}")
  worst = 0.0
  with tempfile.TemporaryDirectory() as tmp:
    for seed, (name, shape) in enumerate(SHAPES.items()):
      folder = model_testing.write_tiny_checkpoint(
        f"{tmp}/{name}",
        num_labels=2,
        tokenizer=False,
        vocab_size=30522,
        max_position_embeddings=512,
        **shape,
      )
      errors = compare(name, folder, batch=args.batch, length=args.length, seed=seed)
      worst = max(worst, *errors.values())
  ok = worst <= args.tolerance and np.isfinite(worst)
  print(f"worst rel. error {worst:.2e} (tolerance {args.tolerance:g}): {'ok' if ok else 'FAIL'}")
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())

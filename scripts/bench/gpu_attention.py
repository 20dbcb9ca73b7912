r"""Does cuDNN flash attention give the model the same logits and gradients as XLA attention?

On a GPU, for random BERTs of the MiniLM and BERT-base shapes (`scripts.bench.common.SHAPES`)
in bfloat16, it compares `attention="cudnn"` with `attention="xla"` on right-padded batches
of random lengths: the logits (the last layer runs a 1-token query for the classifier), the
hidden states of every token (`return_hidden=True`, full-length queries; padded positions
left out) and the gradient of the summed logits with respect to the parameters. It prints
‖a − b‖ / ‖b‖ per quantity and fails (exit 1) above `--tolerance` (bfloat16 operands give
1e-3 to 1e-2 by rounding alone). Without a GPU it says so and exits 2.

  python -m scripts.bench.gpu_attention
  python -m scripts.bench.gpu_attention --shapes bert-base --batch 32 --length 256
"""

from __future__ import annotations

import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from scripts.bench import common


def relative_error(a, b) -> float:
  """‖a − b‖ / ‖b‖ over the flattened trees, in float64."""
  a = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(a)])
  b = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(b)])
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare(shape: str, *, batch: int, length: int, seed: int) -> dict[str, float]:
  """Relative errors of cuDNN against XLA attention for the logits, hidden states, gradients."""
  with tempfile.TemporaryDirectory() as folder:
    loaded = {
      impl: common.load_random_model(shape, dtype=jnp.bfloat16, folder=folder, attention=impl)
      for impl in ("cudnn", "xla")
    }
  params = loaded["xla"].params
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, length + 1, batch)
  lengths[0] = length
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  vocab = loaded["xla"].config.vocab_size
  ids = jnp.asarray(rng.integers(5, vocab, (batch, length)) * mask, jnp.int32)
  mask = jnp.asarray(mask)
  types = jnp.zeros_like(ids)
  valid = mask[..., None].astype(jnp.float32)
  out = {}
  for impl, pretrained in loaded.items():
    module = pretrained.module

    def logits(p, module=module):
      return module.apply({"params": p}, ids, mask, types)

    def hidden(p, module=module):
      return module.apply({"params": p}, ids, mask, types, return_hidden=True)[1]

    out[impl] = {
      "logits (1-token query)": jax.jit(logits)(params),
      "hidden (full query)": jax.jit(hidden)(params).astype(jnp.float32) * valid,
      "gradient": jax.jit(jax.grad(lambda p, f=logits: f(p).sum()))(params),
    }
  errors = {key: relative_error(out["cudnn"][key], out["xla"][key]) for key in out["xla"]}
  for key, error in errors.items():
    print(f"{shape:<9} batch {batch} length {length}: {key:<24} relative error {error:.2e}")
  return errors


def main(argv: list[str] | None = None) -> int:
  parser = common.parser(__doc__)
  parser.add_argument("--shapes", nargs="+", choices=common.SHAPES, default=["minilm", "bert-base"])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--tolerance", type=float, default=2e-2)
  args = parser.parse_args(argv)
  report = common.Report(__doc__.splitlines()[0])
  if jax.default_backend() != "gpu":
    print(f"needs a GPU; the backend is {jax.default_backend()}")
    report.finish(args.json)
    return 2
  errors = {}
  for seed, shape in enumerate(args.shapes):
    errors[shape] = compare(shape, batch=args.batch, length=args.length, seed=seed)
  worst = max(e for by_key in errors.values() for e in by_key.values())
  ok = bool(np.isfinite(worst) and worst <= args.tolerance)
  print(
    f"worst relative error {worst:.2e} (tolerance {args.tolerance:g}): {'ok' if ok else 'FAIL'}"
  )
  report.add("errors", errors)
  report.add("ok", ok)
  report.finish(args.json)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())

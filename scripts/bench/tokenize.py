r"""How fast does `pats_jax.data.tokenize` turn a GLUE training split into token ids?

The split is read from a local GLUE folder (`--glue_dir`, else `$GLUE_DIR`, else
`./glue_data`) with `pats_jax.data.load_glue` and tokenised `--repeats` times with the
model's tokenizer (any name or folder the trainer accepts, all-MiniLM-L6-v2 by default).
It prints the median and best wall time and sentences (rows) per second. SST-2's training
split has 67,349 sentences.

  python -m scripts.bench.tokenize                     # SST-2, max length 128, 3 repeats
  python -m scripts.bench.tokenize --task mrpc --repeats 5
"""

from __future__ import annotations

import statistics
import tempfile
import time

import transformers

from pats_jax import data
from pats_jax.training import sources
from scripts.bench import common


def main(argv: list[str] | None = None) -> dict:
  parser = common.parser(__doc__)
  parser.add_argument("--task", default="sst2", help="a GLUE task")
  parser.add_argument("--glue_dir", default="", help="GLUE folder (default $GLUE_DIR, ./glue_data)")
  parser.add_argument("--model", default="all-MiniLM-L6-v2", help="a trainer model name or folder")
  parser.add_argument("--max_length", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  folder = common.glue_dir(args.glue_dir)
  report = common.Report(__doc__.splitlines()[0])
  spec = data.get_task(args.task)
  dataset = data.load_glue(spec, "train", source="local", data_dir=folder)
  with tempfile.TemporaryDirectory() as workdir:
    tokenizer = transformers.AutoTokenizer.from_pretrained(
      sources.resolve_model(args.model, workdir=workdir)
    )
  times = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    split = data.tokenize(dataset, tokenizer, spec, max_length=args.max_length)
    times.append(time.perf_counter() - t0)
  median = statistics.median(times)
  print(
    f"{spec.name} train: {len(split):,} rows, {int(split.lengths.sum()):,} tokens, max_length "
    f"{args.max_length}; tokenizer {type(tokenizer).__name__}"
  )
  print(
    f"tokenise: median {median:.3f} s, best {min(times):.3f} s of {args.repeats} "
    f"({len(split) / median:,.0f} rows/s at the median)"
  )
  report.add("task", spec.name)
  report.add("rows", len(split))
  report.add("median_s", median)
  report.add("best_s", min(times))
  report.add("rows_per_s", len(split) / median)
  return report.finish(args.json)


if __name__ == "__main__":
  main()

"""A synthetic GLUE folder: the glue_data layout, small, with labels a tiny model can learn.

`write_synthetic_glue` writes CoLA, SST-2, MRPC, STS-B, RTE and WNLI train/dev/test TSVs in the
layout of GLUE's `download_glue_data.py` (https://github.com/nyu-mll/GLUE-baselines), built from
the small vocabulary `WORDS`. It lets a run (`--config.data.data_dir=tiny`, as in
`configs/tiny.py`) and the tests exercise the whole data path without downloads.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

# The vocabulary: a positive or negative word decides the single-sentence labels.
POSITIVE = ("good", "great", "fine", "nice", "happy", "bright")
NEGATIVE = ("bad", "awful", "poor", "sad", "dark", "grim")
NEUTRAL = (
  "the", "a", "cat", "dog", "man", "woman", "house", "car", "tree", "river", "city", "sees",
  "likes", "walks", "near", "and", "with", "is", "was", "very", "old", "new", "red", "blue",
  "small", "big", "runs", "sits", "on", "in",
)  # fmt: skip
WORDS = POSITIVE + NEGATIVE + NEUTRAL


def _sentence(rng: np.random.Generator, *, mood: int | None = None, length: int = 6) -> list[str]:
  """Random neutral words plus one positive (mood 1) or negative (mood 0) word."""
  words = list(rng.choice(NEUTRAL, size=length - 1))
  if mood is not None:
    words.insert(int(rng.integers(0, length)), str(rng.choice(POSITIVE if mood else NEGATIVE)))
  return [str(word) for word in words]


def _pair(rng: np.random.Generator) -> tuple[str, str, float]:
  """Two sentences and their word overlap in [0, 1] (half the pairs share most words)."""
  first = _sentence(rng, length=int(rng.integers(5, 10)))
  if rng.random() < 0.5:
    second = [word for word in first if rng.random() < 0.8] or first[:1]
  else:
    second = _sentence(rng, length=int(rng.integers(3, 7)))
  overlap = len(set(second) & set(first)) / len(set(second))
  return " ".join(first), " ".join(second), overlap


def _write_tsv(path: pathlib.Path, header: list[str] | None, rows: list[list[str]]) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = (["\t".join(header)] if header else []) + ["\t".join(row) for row in rows]
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_synthetic_glue(
  out_dir: str | os.PathLike[str],
  *,
  num_train: int = 64,
  num_dev: int = 32,
  num_test: int = 16,
  seed: int = 0,
) -> pathlib.Path:
  """Writes a small synthetic GLUE folder (CoLA, SST-2, MRPC, STS-B, RTE, WNLI), glue_data layout.

  Labels follow rules a tiny model can learn: single sentences are positive (SST-2) or
  acceptable (CoLA) when they hold a positive word; pairs are paraphrases / entailed when the
  second sentence mostly repeats the first (overlap >= 0.75); STS-B's score is 5 x overlap.

  Args:
    out_dir: the folder to write (created).
    num_train: rows of each train.tsv.
    num_dev: rows of each dev.tsv.
    num_test: rows of each test.tsv (unlabelled).
    seed: the random seed.

  Returns:
    The folder.
  """
  out = pathlib.Path(out_dir)
  rng = np.random.default_rng(seed)
  for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
    test = split == "test"
    moods = [int(rng.integers(0, 2)) for _ in range(count)]
    singles = [" ".join(_sentence(rng, mood=mood)) for mood in moods]
    pairs = [_pair(rng) for _ in range(count)]
    same = [int(overlap >= 0.75) for _, _, overlap in pairs]
    if test:
      _write_tsv(
        out / "CoLA" / "test.tsv",
        ["index", "sentence"],
        [[str(i), text] for i, text in enumerate(singles)],
      )
      _write_tsv(
        out / "SST-2" / "test.tsv",
        ["index", "sentence"],
        [[str(i), text] for i, text in enumerate(singles)],
      )
    else:
      _write_tsv(
        out / "CoLA" / f"{split}.tsv",
        None,
        [
          ["tiny", str(mood), "" if mood else "*", text]
          for mood, text in zip(moods, singles, strict=True)
        ],
      )
      _write_tsv(
        out / "SST-2" / f"{split}.tsv",
        ["sentence", "label"],
        [[text, str(mood)] for mood, text in zip(moods, singles, strict=True)],
      )
    mrpc_header = ["index" if test else "Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]
    _write_tsv(
      out / "MRPC" / f"{split}.tsv",
      mrpc_header,
      [
        [str(i) if test else str(label), str(2 * i), str(2 * i + 1), a, b]
        for i, ((a, b, _), label) in enumerate(zip(pairs, same, strict=True))
      ],
    )
    stsb_header = [
      "index",
      "genre",
      "filename",
      "year",
      "old_index",
      "source1",
      "source2",
      "sentence1",
      "sentence2",
    ] + ([] if test else ["score"])
    _write_tsv(
      out / "STS-B" / f"{split}.tsv",
      stsb_header,
      [
        [str(i), "tiny", "tiny", "2026", f"{i:04d}", "none", "none", a, b]
        + ([] if test else [f"{5 * overlap:.3f}"])
        for i, (a, b, overlap) in enumerate(pairs)
      ],
    )
    rte_labels = ("entailment", "not_entailment")
    for task, names in (("RTE", rte_labels), ("WNLI", ("0", "1"))):
      header = ["index", "sentence1", "sentence2"] + ([] if test else ["label"])
      rows = []
      for i, ((a, b, _), label) in enumerate(zip(pairs, same, strict=True)):
        # RTE: entailment (id 0) when the pair overlaps; WNLI: entailment is id 1.
        name = names[1 - label] if task == "RTE" else names[label]
        rows.append([str(i), a, b] + ([] if test else [name]))
      _write_tsv(out / task / f"{split}.tsv", header, rows)
  return out

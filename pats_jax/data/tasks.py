"""GLUE task specifications: text fields, labels, metrics and splits.

Field names and label orders follow the Hugging Face `nyu-mll/glue` dataset (itself a port of
the TensorFlow Datasets `glue` builder), so every source (local TSVs, the Hub, TFDS) maps onto
the same examples.

References:
  Wang et al., "GLUE: A Multi-Task Benchmark and Analysis Platform for Natural Language
  Understanding", ICLR 2019. https://arxiv.org/abs/1804.07461
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

TRAIN = "train"
VALIDATION = "validation"
TEST = "test"
VALIDATION_MATCHED = "validation_matched"
VALIDATION_MISMATCHED = "validation_mismatched"
TEST_MATCHED = "test_matched"
TEST_MISMATCHED = "test_mismatched"

_NLI_3 = ("entailment", "neutral", "contradiction")
_NLI_2 = ("entailment", "not_entailment")


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a trainer needs to know about a sentence(-pair) task.

  Attributes:
    name: canonical lower-case name (`"sst2"`, `"mnli"`, ...; the `nyu-mll/glue` config).
    text_keys: the text field, and the second text field of a pair task (else None).
    num_labels: number of classes; 1 means regression (STS-B).
    label_names: class names in label-id order, or None for regression.
    best_metric: key of `pats_jax.metrics.glue_metrics`' result used to pick the best
      checkpoint (higher is better).
    dev_splits: evaluation splits (MNLI: matched, then mismatched).
    test_splits: unlabelled splits predicted for a GLUE submission.
    train_split: the training split, or None (AX is a test set only).
  """

  name: str
  text_keys: tuple[str, str | None]
  num_labels: int
  label_names: tuple[str, ...] | None
  best_metric: str
  dev_splits: tuple[str, ...] = (VALIDATION,)
  test_splits: tuple[str, ...] = (TEST,)
  train_split: str | None = TRAIN

  @property
  def is_regression(self) -> bool:
    """True when the label is a real number (`num_labels == 1`)."""
    return self.num_labels == 1

  @property
  def is_pair(self) -> bool:
    """True when examples are sentence pairs."""
    return self.text_keys[1] is not None

  @property
  def splits(self) -> tuple[str, ...]:
    """All splits of the task, training split first."""
    head = (self.train_split,) if self.train_split else ()
    return head + self.dev_splits + self.test_splits


GLUE_TASKS: Mapping[str, TaskSpec] = {
  spec.name: spec
  for spec in (
    TaskSpec("cola", ("sentence", None), 2, ("unacceptable", "acceptable"), "matthews_correlation"),
    TaskSpec("sst2", ("sentence", None), 2, ("negative", "positive"), "accuracy"),
    TaskSpec(
      "mrpc", ("sentence1", "sentence2"), 2, ("not_equivalent", "equivalent"), "combined_score"
    ),
    TaskSpec(
      "qqp", ("question1", "question2"), 2, ("not_duplicate", "duplicate"), "combined_score"
    ),
    TaskSpec("stsb", ("sentence1", "sentence2"), 1, None, "combined_score"),
    TaskSpec(
      "mnli",
      ("premise", "hypothesis"),
      3,
      _NLI_3,
      "accuracy",
      dev_splits=(VALIDATION_MATCHED, VALIDATION_MISMATCHED),
      test_splits=(TEST_MATCHED, TEST_MISMATCHED),
    ),
    TaskSpec("qnli", ("question", "sentence"), 2, _NLI_2, "accuracy"),
    TaskSpec("rte", ("sentence1", "sentence2"), 2, _NLI_2, "accuracy"),
    TaskSpec("wnli", ("sentence1", "sentence2"), 2, ("not_entailment", "entailment"), "accuracy"),
    # The diagnostic set: predicted with an MNLI model, scored by GLUE with R3 (Matthews).
    TaskSpec(
      "ax",
      ("premise", "hypothesis"),
      3,
      _NLI_3,
      "matthews_correlation",
      dev_splits=(),
      train_split=None,
    ),
  )
}

_TASK_ALIASES = {"diagnostic": "ax", "mnlim": "mnli", "mnlimm": "mnli"}

_SPLIT_ALIASES = {
  "dev": VALIDATION,
  "val": VALIDATION,
  "eval": VALIDATION,
  "dev_matched": VALIDATION_MATCHED,
  "dev_mismatched": VALIDATION_MISMATCHED,
  "validation_m": VALIDATION_MATCHED,
  "validation_mm": VALIDATION_MISMATCHED,
}


def _normalize(name: str) -> str:
  return name.strip().lower().replace("-", "").replace("_", "")


def get_task(name: str | TaskSpec) -> TaskSpec:
  """Returns the `TaskSpec` of a GLUE task.

  Args:
    name: a task name in any common spelling (`"SST-2"`, `"sst2"`, `"STS-B"`, `"MNLI"`,
      `"AX"` or `"diagnostic"`), or a `TaskSpec`, returned unchanged.

  Returns:
    The task's specification.

  Raises:
    ValueError: the name is not a GLUE task.
  """
  if isinstance(name, TaskSpec):
    return name
  if not isinstance(name, str):
    raise TypeError(f"task must be a str or TaskSpec, got {type(name).__name__}")
  key = _normalize(name)
  key = _TASK_ALIASES.get(key, key)
  if key not in GLUE_TASKS:
    raise ValueError(
      f"unknown GLUE task {name!r}; expected one of {sorted(GLUE_TASKS)} "
      "(for your own data use pats_jax.data.load_custom)"
    )
  return GLUE_TASKS[key]


def canonical_split(spec: TaskSpec, split: str) -> str:
  """Maps a split name (`"dev"`, `"dev_matched"`, `"validation"`, ...) to the task's own name.

  Args:
    spec: the task.
    split: a split name; GLUE TSV names (`dev`, `dev_matched`, `test_mismatched`) and
      `nyu-mll/glue` names (`validation`, `validation_matched`) are both accepted.

  Returns:
    One of `spec.splits`.

  Raises:
    ValueError: the task has no such split.
  """
  key = split.strip().lower().replace("-", "_")
  key = _SPLIT_ALIASES.get(key, key)
  if key not in spec.splits:
    raise ValueError(
      f"task {spec.name!r} has no split {split!r}; expected one of {list(spec.splits)}"
    )
  return key


def is_test_split(split: str) -> bool:
  """True for the unlabelled GLUE test splits."""
  return split.startswith(TEST)

"""Model configuration, read from and written to Hugging Face `config.json`.

`ModelConfig` holds what every family has (the sizes, the labels, the source config.json);
each family subclasses it with its own fields (`bert.BertConfig`, `electra.ElectraConfig`, ...),
named as in config.json. `ModelConfig.from_hf_dict` picks the subclass by `model_type`
(`registry.py`), fills the keys a config.json omits with the defaults of transformers' config
class, and refuses options the family does not implement with a message naming the key.
`to_hf_dict` writes a config.json from which transformers'
`AutoModelForSequenceClassification` builds the family's classifier. Keys we do not model
are kept verbatim (as JSON text in `raw_json`, so a config stays hashable and can be a Flax
module attribute) and written back unchanged.

A family's config class declares:

  * its fields (dataclass fields, config.json names), with their defaults in its `Family`;
  * `HIDDEN_DROPOUT_KEYS` / `ATTENTION_DROPOUT_KEYS`: the fields `load(hidden_dropout=...,
    attention_dropout=...)` override;
  * `supported_or_raise(hf)`: refuses config.json options it does not implement;
  * `canonical_hf(hf)`: config.json with other spellings of its fields (those of older or
    newer transformers) rewritten onto the field names (by default unchanged);
  * `__post_init__`: checks the values (calling `super().__post_init__()`);
  * `head_dropout`: the dropout rate of its classification head.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, ClassVar

from pats_jax.models import registry

# Fields every config has that are not read from config.json keys of the same name.
_OWN_FIELDS = ("model_type", "num_labels", "label_names", "raw_json")


# Fields that size the model's arrays, where a family has them: positive integers.
_SIZES = (
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "intermediate_size",
  "max_position_embeddings",
)


def refuse_unless(hf: dict[str, Any], key: str, allowed: tuple, *, default: Any, fix: str) -> None:
  """Raises ValueError naming `key` when config.json's value (or `default`) is not `allowed`."""
  value = hf.get(key, default)
  if value not in allowed:
    raise ValueError(f"{key}={value!r} is not supported; {fix}")


def check_rate(name: str, rate: float | None) -> None:
  """A dropout rate must be None (unset) or in [0, 1)."""
  if rate is not None and not 0.0 <= rate < 1.0:
    raise ValueError(f"{name} must be in [0, 1), got {rate}")


def _label_names(hf: dict[str, Any], num_labels: int) -> tuple[str, ...] | None:
  """Class names from HF `id2label` when it has `num_labels` non-default names, else None."""
  id2label = hf.get("id2label")
  if not isinstance(id2label, dict) or len(id2label) != num_labels:
    return None
  names = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
  return None if names == tuple(f"LABEL_{i}" for i in range(num_labels)) else names


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
  """What every family's config has (HF key names); families subclass it.

  Attributes:
    model_type: config.json's `model_type`, a registered family (`registry.model_types()`).
    vocab_size: rows of the word-embedding table.
    hidden_size: model width E.
    num_hidden_layers: number of transformer layers.
    num_attention_heads: number of heads N; E must be a multiple of N.
    initializer_range: std of the normal initialiser of new weights.
    num_labels: classifier outputs; 1 means regression (STS-B).
    label_names: names of the classes (HF `id2label`), or None for LABEL_i.
    raw_json: the source config.json as canonical JSON text, kept for `to_hf_dict`.
  """

  # Fields that `load(hidden_dropout=...)` / `load(attention_dropout=...)` set.
  HIDDEN_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ()
  ATTENTION_DROPOUT_KEYS: ClassVar[tuple[str, ...]] = ()

  model_type: str
  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  initializer_range: float
  num_labels: int
  label_names: tuple[str, ...] | None = None
  raw_json: str = "{}"

  def __post_init__(self):
    family = registry.get(self.model_type)
    if type(self) is not family.config_class:
      raise TypeError(
        f"model_type {self.model_type!r} needs {family.config_class.__name__}, "
        f"not {type(self).__name__}"
      )
    for name, least in (*((n, 1) for n in _SIZES), ("type_vocab_size", 0)):
      if not hasattr(self, name):
        continue
      size = getattr(self, name)
      if not isinstance(size, int) or isinstance(size, bool) or size < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {size!r}")
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
        f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
        f"{self.num_attention_heads}"
      )
    if self.num_labels < 1:
      raise ValueError(f"num_labels must be >= 1 (1 = regression), got {self.num_labels}")
    if self.label_names is not None and len(self.label_names) != self.num_labels:
      raise ValueError(
        f"label_names {self.label_names} has {len(self.label_names)} names but "
        f"num_labels={self.num_labels}"
      )

  @property
  def head_dim(self) -> int:
    """Width of one attention head, E / N."""
    return self.hidden_size // self.num_attention_heads

  @property
  def problem_type(self) -> str:
    """HF `problem_type`: "regression" when num_labels == 1, else single-label."""
    return "regression" if self.num_labels == 1 else "single_label_classification"

  @property
  def head_dropout(self) -> float:
    """Dropout rate of the classification head."""
    raise NotImplementedError(f"{type(self).__name__} does not define head_dropout")

  @property
  def pools_first_token(self) -> bool:
    """Whether the head reads the first token only (then the last layer computes only it)."""
    return True

  @classmethod
  def hf_fields(cls) -> tuple[str, ...]:
    """The fields read from config.json keys of the same name."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in _OWN_FIELDS)

  @classmethod
  def supported_or_raise(cls, hf: dict[str, Any]) -> None:
    """Raises ValueError naming a config.json key whose value the family does not implement."""
    if hf.get("pruned_heads"):
      raise ValueError(
        "pruned_heads is not supported; use a checkpoint whose attention heads were not pruned"
      )

  @classmethod
  def canonical_hf(cls, hf: dict[str, Any]) -> dict[str, Any]:
    """config.json with other spellings of the family's fields rewritten onto the field names.

    Checkpoints saved by different transformers versions may spell one setting differently
    (e.g. a per-layer list in one, a period in another); a family maps them onto its fields
    here. Called after `supported_or_raise`; returns a new dict, `hf` is left unchanged.
    """
    return hf

  @classmethod
  def from_hf_dict(
    cls,
    hf: dict[str, Any],
    *,
    num_labels: int,
    source: str = "config.json",
    hidden_dropout: float | None = None,
    attention_dropout: float | None = None,
  ) -> ModelConfig:
    """Builds the config of `hf["model_type"]`'s family from a parsed HF config.json.

    Args:
      hf: the parsed config.json.
      num_labels: classifier outputs (1 = regression).
      source: the file it came from, named in errors.
      hidden_dropout: overrides the family's hidden dropout rates when not None.
      attention_dropout: overrides the family's attention dropout rates when not None.

    Returns:
      An instance of the family's config class.

    Raises:
      ValueError: unknown model_type, unsupported options, bad values.
    """
    model_type = hf.get("model_type")
    family = registry.find(model_type)
    if family is None:
      raise ValueError(
        f"{source}: model_type {model_type!r} is not supported; this loader handles "
        f"{registry.model_types()}"
      )
    config_class = family.config_class
    if not issubclass(config_class, cls):
      raise ValueError(f"{source}: model_type {model_type!r} is not a {cls.__name__}")
    try:
      config_class.supported_or_raise(hf)
      canonical = config_class.canonical_hf(hf)
      values = {
        key: canonical[key] if canonical.get(key) is not None else family.defaults[key]
        for key in config_class.hf_fields()
      }
      for override, keys in (
        (hidden_dropout, config_class.HIDDEN_DROPOUT_KEYS),
        (attention_dropout, config_class.ATTENTION_DROPOUT_KEYS),
      ):
        values.update(dict.fromkeys(keys, override) if override is not None else {})
      return config_class(
        model_type=model_type,
        num_labels=num_labels,
        label_names=_label_names(hf, num_labels),
        raw_json=json.dumps(hf, sort_keys=True),
        **values,
      )
    except (ValueError, TypeError) as e:
      raise ValueError(f"{source}: {e}") from e

  @classmethod
  def from_file(cls, path: str | pathlib.Path, **kwargs) -> ModelConfig:
    """Reads `config.json` at `path`; kwargs as in `from_hf_dict`."""
    path = pathlib.Path(path)
    try:
      hf = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise ValueError(f"{path} is not valid JSON ({e}); download it again") from e
    if not isinstance(hf, dict):
      raise ValueError(f"{path} must hold a JSON object, got {type(hf).__name__}")
    return cls.from_hf_dict(hf, source=str(path), **kwargs)

  def to_hf_dict(self) -> dict[str, Any]:
    """The HF config.json of the family's sequence classifier with these values.

    Keys of the source config we do not model are kept; `architectures`, `id2label`,
    `label2id` and `problem_type` are set so that transformers builds the sequence
    classifier with `num_labels` outputs (regression for 1).
    """
    hf = json.loads(self.raw_json)
    hf["model_type"] = self.model_type
    hf.update({key: getattr(self, key) for key in self.hf_fields()})
    names = self.label_names or tuple(f"LABEL_{i}" for i in range(self.num_labels))
    hf["architectures"] = [registry.get(self.model_type).architecture]
    hf["id2label"] = {str(i): name for i, name in enumerate(names)}
    hf["label2id"] = {name: i for i, name in enumerate(names)}
    hf["problem_type"] = self.problem_type
    hf.pop("num_labels", None)
    hf.pop("torch_dtype", None)
    hf["dtype"] = "float32"
    return hf

"""Model configuration for BERT and RoBERTa, read from and written to HF `config.json`.

`ModelConfig` holds the fields our Flax modules need. It is built from a Hugging Face
`config.json` (`ModelConfig.from_hf_dict`) and turned back into one that transformers'
`AutoModelForSequenceClassification` builds the right class from (`to_hf_dict`). Keys
we do not use are kept verbatim (as JSON text in `raw_json`, so the dataclass stays
hashable and can be a Flax module attribute) and written back unchanged.

References:
  Devlin et al., "BERT", NAACL 2019; Liu et al., "RoBERTa", arXiv 1907.11692.
  transformers' `BertConfig` and `RobertaConfig` for the key names and defaults.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

SUPPORTED_MODEL_TYPES = ("bert", "roberta")

# HF `hidden_act` names that `bert.activation` implements.
SUPPORTED_ACTIVATIONS = (
  "gelu",
  "gelu_python",
  "gelu_new",
  "gelu_fast",
  "gelu_pytorch_tanh",
  "relu",
  "silu",
  "swish",
  "tanh",
)

_ARCHITECTURES = {
  "bert": "BertForSequenceClassification",
  "roberta": "RobertaForSequenceClassification",
}

# Defaults of transformers' BertConfig / RobertaConfig for keys a config.json may omit.
_DEFAULTS: dict[str, dict[str, Any]] = {
  "bert": {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
  },
  "roberta": {
    "vocab_size": 50265,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
  },
}


# Fields that size the model's arrays: positive integers.
_SIZES = (
  "vocab_size",
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "intermediate_size",
  "max_position_embeddings",
  "type_vocab_size",
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyper-parameters of a BERT or RoBERTa sequence classifier (HF key names).

  Attributes:
    model_type: "bert" or "roberta".
    vocab_size: rows of the word-embedding table.
    hidden_size: model width E.
    num_hidden_layers: number of transformer layers.
    num_attention_heads: number of heads N; E must be a multiple of N.
    intermediate_size: width of the feed-forward layer.
    hidden_act: HF activation name (one of `SUPPORTED_ACTIVATIONS`).
    hidden_dropout_prob: dropout after embeddings, attention output and MLP output.
    attention_probs_dropout_prob: dropout on the attention probabilities.
    classifier_dropout: dropout in the head; None means `hidden_dropout_prob`.
    max_position_embeddings: rows of the position-embedding table.
    type_vocab_size: rows of the token-type table (2 for BERT, 1 for RoBERTa).
    initializer_range: std of the normal initialiser of new weights.
    layer_norm_eps: epsilon of every LayerNorm.
    pad_token_id: id of the padding token (RoBERTa's position offset).
    num_labels: classifier outputs; 1 means regression (STS-B).
    label_names: names of the classes (HF `id2label`), or None for LABEL_i.
    raw_json: the source config.json as canonical JSON text, kept for `to_hf_dict`.
  """

  model_type: str
  vocab_size: int
  hidden_size: int
  num_hidden_layers: int
  num_attention_heads: int
  intermediate_size: int
  hidden_act: str
  hidden_dropout_prob: float
  attention_probs_dropout_prob: float
  classifier_dropout: float | None
  max_position_embeddings: int
  type_vocab_size: int
  initializer_range: float
  layer_norm_eps: float
  pad_token_id: int
  num_labels: int
  label_names: tuple[str, ...] | None = None
  raw_json: str = "{}"

  def __post_init__(self):
    if self.model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(
        f"model_type {self.model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}"
      )
    if self.hidden_act not in SUPPORTED_ACTIVATIONS:
      raise ValueError(
        f"hidden_act {self.hidden_act!r} is not supported; supported: {SUPPORTED_ACTIVATIONS}"
      )
    for name in _SIZES:
      size = getattr(self, name)
      if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{name} must be a positive integer, got {size!r}")
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
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
      rate = getattr(self, name)
      if rate is not None and not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")

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
    """Dropout rate of the classification head (HF: classifier_dropout or hidden)."""
    if self.classifier_dropout is None:
      return self.hidden_dropout_prob
    return self.classifier_dropout

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
    """Builds a config from a parsed HF config.json.

    Args:
      hf: the parsed config.json.
      num_labels: classifier outputs (1 = regression).
      source: the file it came from, named in errors.
      hidden_dropout: overrides `hidden_dropout_prob` when not None.
      attention_dropout: overrides `attention_probs_dropout_prob` when not None.

    Returns:
      The config.

    Raises:
      ValueError: unknown model_type, unsupported options, bad values.
    """
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
      raise ValueError(
        f"{source}: model_type {model_type!r} is not supported; this loader handles "
        f"{SUPPORTED_MODEL_TYPES} (BERT, MiniLM, RoBERTa checkpoints)"
      )
    position_type = hf.get("position_embedding_type", "absolute")
    if position_type != "absolute":
      raise ValueError(
        f"{source}: position_embedding_type {position_type!r} is not supported; only "
        "'absolute' position embeddings are implemented"
      )
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
      raise ValueError(
        f"{source}: decoder / cross-attention configs are not supported; use an encoder "
        "checkpoint (is_decoder=false)"
      )
    values = dict(_DEFAULTS[model_type])
    values.update({k: hf[k] for k in values if hf.get(k) is not None})
    if hidden_dropout is not None:
      values["hidden_dropout_prob"] = hidden_dropout
    if attention_dropout is not None:
      values["attention_probs_dropout_prob"] = attention_dropout
    label_names = None
    id2label = hf.get("id2label")
    if isinstance(id2label, dict) and len(id2label) == num_labels:
      label_names = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
      if label_names == tuple(f"LABEL_{i}" for i in range(num_labels)):
        label_names = None
    try:
      return cls(
        model_type=model_type,
        classifier_dropout=hf.get("classifier_dropout"),
        num_labels=num_labels,
        label_names=label_names,
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
    """The HF config.json for `<Type>ForSequenceClassification` with these values.

    Keys of the source config we do not model are kept; `architectures`, `id2label`,
    `label2id` and `problem_type` are set so that transformers builds the sequence
    classifier with `num_labels` outputs (regression for 1).
    """
    hf = json.loads(self.raw_json)
    for field in dataclasses.fields(self):
      if field.name not in ("num_labels", "label_names", "raw_json"):
        hf[field.name] = getattr(self, field.name)
    names = self.label_names or tuple(f"LABEL_{i}" for i in range(self.num_labels))
    hf["architectures"] = [_ARCHITECTURES[self.model_type]]
    hf["id2label"] = {str(i): name for i, name in enumerate(names)}
    hf["label2id"] = {name: i for i, name in enumerate(names)}
    hf["problem_type"] = self.problem_type
    hf.pop("num_labels", None)
    hf.pop("torch_dtype", None)
    hf["dtype"] = "float32"
    return hf

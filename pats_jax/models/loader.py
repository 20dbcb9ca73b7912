"""`load` a Hugging Face checkpoint into our Flax classifier; `save_pretrained`.

`load` reads config.json, the weights and the tokenizer, maps the tensors onto our
parameter tree (`convert.py`), initialises a missing classification head from `seed`,
and reports (and logs at INFO) the head tensors newly initialised and the checkpoint
tensors left unused. `save_pretrained` writes config.json + model.safetensors +
tokenizer files that transformers' `AutoModelForSequenceClassification` loads.

With `scan_layers=True` the per-layer HF tensors are stacked on load into one leaf per
weight kind, `encoder/layers/...` `[num_layers, ...]` (`convert.stack_layers`), and
`save_pretrained` unstacks them again, so the written checkpoint is the same in both layouts.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import pathlib
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pats_jax.models import checkpoint_io, convert, heads, hub
from pats_jax.models._transformers import import_transformers
from pats_jax.models.classifier import SequenceClassifier
from pats_jax.models.config import ModelConfig
from pats_jax.models.layers import ATTENTION_CHOICES

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
  """A checkpoint's config.json or weights cannot be used: unsupported, malformed or
  inconsistent; the message names the file and the problem."""


def _in_file(path: pathlib.Path, error: Exception) -> CheckpointError:
  """`error` as a `CheckpointError` whose message names `path` (once)."""
  message = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
  if str(path) not in message:
    message = f"{path}: {message or type(error).__name__}"
  return CheckpointError(message)


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A loaded model.

  Attributes:
    module: the Flax `SequenceClassifier`; `module.apply({"params": params}, input_ids,
      attention_mask, token_type_ids, deterministic=True, rngs={"dropout": key})` gives
      float32 logits `[batch, num_labels]`.
    params: plain nested dict of jax arrays (no partitioning boxes), in `param_dtype`;
      per-layer (`encoder/layer_{i}/...`) or, with `scan_layers=True`, stacked
      (`encoder/layers/...`, leaves `[num_layers, ...]`).
    tokenizer: the transformers fast tokenizer, or None when the checkpoint has no
      tokenizer files.
    config: the `ModelConfig`.
    newly_initialized: HF names of head tensors initialised from `seed`.
    unused_tensors: checkpoint tensor names not used by the model.
    source: the folder the checkpoint came from.
  """

  module: SequenceClassifier
  params: dict
  tokenizer: Any
  config: ModelConfig
  newly_initialized: list[str]
  unused_tensors: list[str]
  source: str


def abstract_params(module: nn.Module) -> dict:
  """The module's parameter tree as `jax.ShapeDtypeStruct`s (no memory, no compute)."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  key = jax.random.key(0)
  abstract = jax.eval_shape(
    lambda: module.init({"params": key, "dropout": key}, tokens, tokens, tokens)
  )
  return nn.meta.unbox(abstract["params"])


def _merge_missing(params: dict, fresh: dict) -> None:
  """Fills leaves of `fresh` that `params` lacks, in place."""
  for key, value in fresh.items():
    if isinstance(value, dict):
      _merge_missing(params.setdefault(key, {}), value)
    else:
      params.setdefault(key, value)


def load(
  name_or_path: str | os.PathLike,
  *,
  num_labels: int,
  dtype: Any = jnp.float32,
  param_dtype: Any = jnp.float32,
  seed: int = 0,
  attention: str = "auto",
  remat: bool | str = False,
  scan_layers: bool | int = False,
  hidden_dropout: float | None = None,
  attention_dropout: float | None = None,
  reinit_head: bool = False,
  cache_dir: str | None = None,
) -> Pretrained:
  """Loads a checkpoint of a supported family (`SUPPORTED_MODEL_TYPES`) as a Flax classifier.

  Args:
    name_or_path: a local folder with config.json and model.safetensors (or
      pytorch_model.bin, read with torch), or a Hugging Face hub id.
    num_labels: classifier outputs; 1 = regression (STS-B).
    dtype: compute dtype (e.g. jnp.bfloat16); logits are always float32.
    param_dtype: dtype the parameters are stored in.
    seed: seed of the newly initialised head, if the checkpoint lacks one.
    attention: "auto" (cuDNN flash attention on a supporting GPU, else XLA), "xla" or
      "cudnn" (needs right-padded batches and a 16-bit dtype).
    remat: recompute each layer in the backward pass (less memory, more compute): True, or
      what to keep, a `stack.REMAT_POLICIES` name.
    scan_layers: stack the layers' parameters (`params["encoder"]["layers"]`, leaves
      `[num_layers, ...]`, leading logical axis "layers") and run them as one `nn.scan`
      loop: XLA compiles one layer body instead of `num_layers` copies. False keeps one
      subtree per layer (`params["encoder"]["layer_{i}"]`). Logits are the same. An int k > 1
      stacks them too and runs k layers per loop iteration; k >= num_layers unrolls the loop
      (`stack.py`).
    hidden_dropout: overrides config.json's hidden_dropout_prob.
    attention_dropout: overrides config.json's attention_probs_dropout_prob.
    reinit_head: ignore the checkpoint's classification head and start a new one.
    cache_dir: huggingface_hub cache folder for hub ids.

  Returns:
    The `Pretrained` model.

  Raises:
    FileNotFoundError: the checkpoint or one of its files cannot be found.
    CheckpointError: (a ValueError) config.json is unsupported or malformed (an unknown
      model_type, a missing or wrong field), or the weights are wrong, missing or truncated;
      the message names the file.
    ValueError: bad arguments (`attention`).
    ImportError: a pytorch_model.bin checkpoint without torch installed, or a SentencePiece
      tokenizer (`spm.model`, no `tokenizer.json`) without sentencepiece and protobuf.
  """
  if attention not in ATTENTION_CHOICES:
    raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {attention!r}")
  if not jnp.issubdtype(param_dtype, jnp.floating) or not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"dtype and param_dtype must be floating, got {dtype}, {param_dtype}")
  files = hub.resolve(name_or_path, cache_dir=cache_dir)
  try:
    config = ModelConfig.from_file(
      files.config_file,
      num_labels=num_labels,
      hidden_dropout=hidden_dropout,
      attention_dropout=attention_dropout,
    )
  except (ValueError, TypeError, KeyError, ArithmeticError) as error:  # From the file's values.
    raise _in_file(files.config_file, error) from error
  module = SequenceClassifier(config, dtype, param_dtype, attention, remat, scan_layers)
  shapes = abstract_params(module)
  try:
    tensors = checkpoint_io.read_tensors(files.weights_file)
    converted = convert.from_hf(
      tensors,
      config,
      convert.unstack_layers(shapes),
      source=str(files.weights_file),
      skip_head=reinit_head,
    )
  except ValueError as error:
    raise _in_file(files.weights_file, error) from error
  params = converted.params
  if converted.missing_head:
    _merge_missing(params, {"head": heads.init_head(config, seed, param_dtype)})
  if scan_layers:
    params = convert.stack_layers(params)
  params = jax.tree.map(lambda x: jnp.asarray(x, dtype=param_dtype), params)
  if jax.tree.structure(params) != jax.tree.structure(shapes):
    raise AssertionError("internal error: converted params do not match the module's tree")

  tokenizer = None
  if files.has_tokenizer:
    _check_sentencepiece(files.folder)
    transformers = import_transformers()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(files.folder))
  else:
    logger.warning("%s has no tokenizer files; Pretrained.tokenizer is None", files.folder)

  logger.info(
    "Loaded %s (%s, %d layers, width %d, %d labels) from %s",
    name_or_path,
    config.model_type,
    config.num_hidden_layers,
    config.hidden_size,
    num_labels,
    files.weights_file,
  )
  if converted.missing_head:
    logger.info("Newly initialised from seed %d: %s", seed, converted.missing_head)
  if converted.unused:
    logger.info("Unused checkpoint tensors: %s", converted.unused)
  return Pretrained(
    module=module,
    params=params,
    tokenizer=tokenizer,
    config=config,
    newly_initialized=converted.missing_head,
    unused_tensors=converted.unused,
    source=str(files.folder),
  )


def _importable(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def _check_sentencepiece(folder: pathlib.Path) -> None:
  """Raises ImportError naming what to install when `folder`'s tokenizer is only a SentencePiece
  model and the packages that read it are missing (transformers would say something else)."""
  if (folder / "tokenizer.json").is_file() or not (folder / hub.SENTENCEPIECE_FILE).is_file():
    return
  packages = {"sentencepiece": "sentencepiece", "protobuf": "google.protobuf"}
  missing = [name for name, module in packages.items() if not _importable(module)]
  if missing:
    raise ImportError(
      f"{folder / hub.SENTENCEPIECE_FILE} is a SentencePiece tokenizer; reading it needs "
      f"{' and '.join(missing)}: `pip install {' '.join(missing)}` (part of pats_jax[data])"
    )


def _to_host(params) -> dict:
  """Params as numpy on every process (gathers arrays sharded across processes)."""
  from jax.experimental import multihost_utils

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(fetch, params)


def save_pretrained(
  pretrained: Pretrained, params: dict, out_dir: str | os.PathLike
) -> pathlib.Path:
  """Writes an HF-compatible checkpoint: config.json, model.safetensors, tokenizer.

  transformers' `AutoModelForSequenceClassification.from_pretrained(out_dir)` then
  builds `<Type>ForSequenceClassification` with `num_labels` outputs (problem_type
  "regression" for 1) and the same logits. Weights are written as float32. With
  multiple processes call it on every process (arrays are gathered); process 0 writes.

  Args:
    pretrained: the loaded model (its config and tokenizer are written).
    params: the parameters to save (e.g. after fine-tuning), same tree as
      `pretrained.params`, per-layer or stacked (`scan_layers=True`: unstacked into
      HF's per-layer tensors); a `{"params": ...}` wrapper is accepted.
    out_dir: the folder to write (created if needed).

  Returns:
    The output folder.
  """
  params = nn.meta.unbox(params)
  if "params" in params and "encoder" not in params:
    params = params["params"]
  tensors = convert.to_hf(_to_host(params), pretrained.config)
  out = pathlib.Path(out_dir)
  if jax.process_index() == 0:
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_io.write_safetensors(tensors, out / "model.safetensors")
    hf_config = pretrained.config.to_hf_dict()
    (out / "config.json").write_text(json.dumps(hf_config, indent=2, sort_keys=True) + "\n")
    if pretrained.tokenizer is not None:
      pretrained.tokenizer.save_pretrained(str(out))
  return out

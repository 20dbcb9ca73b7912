"""Find a checkpoint's files: a local folder, or a Hugging Face hub id via huggingface_hub.

Weights are looked for in this order: `model.safetensors`, the sharded
`model.safetensors.index.json`, `pytorch_model.bin`. A hub id is downloaded (or read
from the local HF cache) with `huggingface_hub.hf_hub_download`; when offline with no
cached copy the error names the files looked for and where.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = (
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "vocab.txt",
  "vocab.json",
  "merges.txt",
  "spm.model",
)
# A SentencePiece model (DeBERTa-v3's only tokenizer file); transformers converts it into a fast
# tokenizer with the sentencepiece and protobuf packages.
SENTENCEPIECE_FILE = "spm.model"


@dataclasses.dataclass(frozen=True)
class CheckpointFiles:
  """Where a checkpoint's files are.

  Attributes:
    folder: the folder holding config.json (and tokenizer files, if any).
    config_file: path of config.json.
    weights_file: path of the weights (one of `WEIGHT_FILES`).
    has_tokenizer: whether tokenizer files are present in `folder`.
  """

  folder: pathlib.Path
  config_file: pathlib.Path
  weights_file: pathlib.Path
  has_tokenizer: bool


def _local(folder: pathlib.Path) -> CheckpointFiles:
  config_file = folder / CONFIG_FILE
  if not config_file.is_file():
    raise FileNotFoundError(
      f"{folder} has no {CONFIG_FILE}; a checkpoint folder needs {CONFIG_FILE} and one of "
      f"{WEIGHT_FILES}"
    )
  for name in WEIGHT_FILES:
    if (folder / name).is_file():
      weights = folder / name
      break
  else:
    raise FileNotFoundError(
      f"{folder} has none of the weight files {WEIGHT_FILES}; put the model's weights "
      "there (e.g. from the Hugging Face hub) or pass another folder"
    )
  has_tokenizer = any((folder / name).is_file() for name in TOKENIZER_FILES)
  return CheckpointFiles(folder, config_file, weights, has_tokenizer)


def _download(repo_id: str, cache_dir: str | None) -> CheckpointFiles:
  from huggingface_hub import constants, hf_hub_download
  from huggingface_hub.errors import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
  )

  where = cache_dir or constants.HF_HUB_CACHE
  unreachable: list[str] = []

  def fetch(filename: str) -> pathlib.Path | None:
    """The file's local path, or None if the repo lacks it or it cannot be fetched."""
    try:
      return pathlib.Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir))
    except LocalEntryNotFoundError:  # offline and not cached
      unreachable.append(filename)
      return None
    except EntryNotFoundError:  # the repo has no such file
      return None

  try:
    config_file = fetch(CONFIG_FILE)
    weights = None
    if config_file is not None:
      weights = next((w for w in map(fetch, WEIGHT_FILES) if w is not None), None)
  except (RepositoryNotFoundError, HFValidationError) as e:
    raise FileNotFoundError(
      f"{repo_id!r} is neither a local folder nor a hub repository ({e})"
    ) from e
  if config_file is None or weights is None:
    if unreachable:
      offline = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub is unreachable"
      raise FileNotFoundError(
        f"{repo_id!r} is not a local folder (no {pathlib.Path(repo_id).resolve()}), "
        f"{offline}, and the Hugging Face cache at {where} lacks {unreachable}. Looked for "
        f"{CONFIG_FILE} and one of {WEIGHT_FILES}. Download it where there is internet "
        f"(`hf download {repo_id}`, into that cache) or pass a local folder."
      )
    missing = CONFIG_FILE if config_file is None else f"any of {WEIGHT_FILES}"
    raise FileNotFoundError(f"hub repo {repo_id!r} has no {missing}")
  if weights.name.endswith(".index.json"):
    for shard in sorted(set(json.loads(weights.read_text())["weight_map"].values())):
      if fetch(shard) is None:
        raise FileNotFoundError(f"{repo_id!r}: shard {shard!r} of {weights.name} not found")
  tokenizer = [fetch(name) for name in TOKENIZER_FILES]
  return CheckpointFiles(
    config_file.parent, config_file, weights, any(t is not None for t in tokenizer)
  )


def resolve(name_or_path: str | os.PathLike, *, cache_dir: str | None = None) -> CheckpointFiles:
  """Finds config, weights and tokenizer files for a folder or a hub id.

  Args:
    name_or_path: a local folder, or a hub id like "bert-base-uncased".
    cache_dir: the huggingface_hub cache folder (default: HF_HUB_CACHE).

  Returns:
    The files found.

  Raises:
    FileNotFoundError: no such folder or repo, required files missing, or offline with
      no cached copy; the message names the files looked for and where.
  """
  path = pathlib.Path(name_or_path).expanduser()
  if path.is_dir():
    return _local(path.resolve())
  if path.exists():
    raise FileNotFoundError(f"{path} is a file; pass the checkpoint's folder")
  text = str(name_or_path)
  if text.startswith((".", "/", "~")) or text.count("/") > 1:
    raise FileNotFoundError(f"no checkpoint folder at {path.resolve()}")
  return _download(text, cache_dir)

"""Read and write checkpoint tensor files: safetensors (single or sharded) and torch .bin.

Reading `model.safetensors` first checks the header against the file size, so a
truncated download fails with the name of the first tensor whose bytes are missing,
rather than safetensors' generic "incomplete metadata". `pytorch_model.bin` needs torch
(imported only then); without it the error says to install torch or convert the file.

Format: a safetensors file is an 8-byte little-endian header length n, n bytes of JSON
header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then
the data section; offsets are relative to its start.
"""

from __future__ import annotations

import json
import pathlib
import struct
from collections.abc import Mapping

import numpy as np


def check_safetensors(path: str | pathlib.Path) -> tuple[dict, int]:
  """Validates a safetensors file's header against its size.

  Returns:
    The parsed header and the byte offset where the data section starts.

  Raises:
    ValueError: the file is too short for its header, or a tensor's bytes lie past the
      end of the file (truncated download); the message names the tensor and the file.
  """
  path = pathlib.Path(path)
  size = path.stat().st_size
  with path.open("rb") as f:
    prefix = f.read(8)
    if len(prefix) < 8:
      raise ValueError(f"{path} is truncated ({size} bytes, no header); download it again")
    (header_len,) = struct.unpack("<Q", prefix)
    if 8 + header_len > size:
      raise ValueError(
        f"{path} is truncated: its header needs {header_len} bytes but the file has "
        f"{size} bytes; download it again"
      )
    try:
      header = json.loads(f.read(header_len))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path} has a corrupt safetensors header ({e}); download it again") from e
  data_size = size - 8 - header_len
  entries = sorted(
    ((v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__"),
  )
  for end, name in entries:
    if end > data_size:
      raise ValueError(
        f"{path} is truncated: tensor {name!r} needs bytes up to {end} of the data section "
        f"but only {data_size} are present; download the file again"
      )
  return header, 8 + header_len


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """All tensors of one safetensors file as numpy (bfloat16 read via ml_dtypes)."""
  from safetensors import SafetensorError, safe_open

  path = pathlib.Path(path)
  header, data_start = check_safetensors(path)
  out = {}
  try:
    with safe_open(str(path), framework="numpy") as f:
      for name in f.keys():  # noqa: SIM118 (safe_open is not a Mapping)
        if header[name]["dtype"] == "BF16":
          out[name] = _read_bf16(path, header[name], data_start)
        else:
          out[name] = f.get_tensor(name)
  except SafetensorError as e:
    raise ValueError(f"{path}: cannot read safetensors file ({e}); download it again") from e
  return out


def _read_bf16(path: pathlib.Path, entry: dict, data_start: int) -> np.ndarray:
  """A bfloat16 tensor (which safetensors' numpy backend cannot return) via a memmap."""
  import ml_dtypes

  begin, end = entry["data_offsets"]
  data = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start + begin, shape=(end - begin,))
  return np.array(data.view(ml_dtypes.bfloat16).reshape(entry["shape"]))


def read_sharded_safetensors(index_path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Tensors of a sharded checkpoint from its `model.safetensors.index.json`."""
  index_path = pathlib.Path(index_path)
  weight_map = json.loads(index_path.read_text()).get("weight_map")
  if not isinstance(weight_map, dict):
    raise ValueError(f"{index_path} has no 'weight_map'; download it again")
  out = {}
  for shard in sorted(set(weight_map.values())):
    shard_path = index_path.parent / shard
    if not shard_path.is_file():
      raise ValueError(f"{index_path} lists shard {shard!r}, which is not at {shard_path}")
    out.update(read_safetensors(shard_path))
  return out


def read_torch_bin(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Tensors of a `pytorch_model.bin` (needs torch; loaded with weights_only=True)."""
  path = pathlib.Path(path)
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      f"{path} is a PyTorch checkpoint and reading it needs torch: `pip install torch` "
      "(the CPU wheel is enough), or convert it once to model.safetensors (e.g. with "
      "transformers: AutoModel.from_pretrained(dir).save_pretrained(dir))"
    ) from e
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise ValueError(f"{path}: cannot read PyTorch checkpoint ({e}); download it again") from e
  if not isinstance(state, Mapping):
    raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
  out = {}
  for name, tensor in state.items():
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
      tensor = tensor.float()
    out[name] = tensor.numpy()
  return out


def read_tensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
  """Tensors of a checkpoint file, by its name: *.safetensors, *.index.json or *.bin."""
  path = pathlib.Path(path)
  if path.name.endswith(".safetensors.index.json"):
    return read_sharded_safetensors(path)
  if path.suffix == ".safetensors":
    return read_safetensors(path)
  if path.suffix == ".bin":
    return read_torch_bin(path)
  raise ValueError(f"{path}: unknown checkpoint format (expected .safetensors or .bin)")


def write_safetensors(tensors: Mapping[str, np.ndarray], path: str | pathlib.Path) -> None:
  """Writes tensors to a safetensors file that transformers' PyTorch loader accepts."""
  from safetensors.numpy import save_file

  contiguous = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
  save_file(contiguous, str(path), metadata={"format": "pt"})

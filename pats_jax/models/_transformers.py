"""`import_transformers()`: transformers, without its notice that PyTorch is missing.

pats_jax takes only tokenizers from transformers (the models are Flax), so a JAX install needs
no PyTorch. Without it, `import transformers` logs once, on its library logger `transformers`:
"PyTorch was not found. Models won't be available and only tokenizers, configuration and
file/data utilities can be used." For a pats_jax user that is noise, so a filter on that logger
drops exactly this record; every other message of transformers passes unchanged.
"""

from __future__ import annotations

import logging
from types import ModuleType

# The start of transformers' notice (transformers/__init__.py, logged when torch is absent).
TORCH_NOTICE = "PyTorch was not found. Models won't be available"


def _not_torch_notice(record: logging.LogRecord) -> bool:
  """False for transformers' notice that PyTorch is missing, True for every other record."""
  return not record.getMessage().startswith(TORCH_NOTICE)


def import_transformers() -> ModuleType:
  """Imports transformers with its PyTorch notice filtered out (the filter is added once)."""
  logging.getLogger("transformers").addFilter(_not_torch_notice)
  import transformers

  return transformers

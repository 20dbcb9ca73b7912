"""Counting XLA compilations in a test (the optax contract: no recompilation on step 2)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator

import jax


@contextlib.contextmanager
def compile_log() -> Iterator[list[str]]:
  """The messages of the XLA compilations that happen inside the block."""
  messages: list[str] = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = logging.getLogger("jax")
  logger.addHandler(handler)
  try:
    with jax.log_compiles():
      yield messages
  finally:
    logger.removeHandler(handler)
    messages[:] = [m for m in messages if re.search(r"Finished .* compilation", m)]

"""Without PyTorch, pats_jax's use of transformers prints no "PyTorch was not found" notice.

Each case runs Python with torch hidden from imports (as on a JAX-only install), lets pats_jax
import transformers, and checks that transformers' notice is gone while its other warnings
still print.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from _train_helpers import REPO_ROOT, cache_env

from pats_jax.models import _transformers

# Hides torch from every import finder, so that transformers finds no PyTorch.
_HIDE_TORCH = """
import sys


class HideTorch:
  def __init__(self, finder):
    self.finder = finder

  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] == "torch" or not hasattr(self.finder, "find_spec"):
      return None
    return self.finder.find_spec(name, path, target)

  def __getattr__(self, name):
    return getattr(self.finder, name)


sys.meta_path[:] = [HideTorch(finder) for finder in sys.meta_path]
"""

_CHECK = """
import logging
import transformers
assert not transformers.utils.is_torch_available(), "torch is not hidden"
logging.getLogger("transformers").warning("another transformers warning")
"""

USES = {
  "load a checkpoint with a tokenizer": (
    "from pats_jax import models\n"
    "from pats_jax.models import tiny\n"
    "models.load(tiny.write_tiny_checkpoint(sys.argv[1]), num_labels=2)\n"
  ),
  "write a tiny RoBERTa": (
    "from pats_jax.models import tiny\n"
    "tiny.write_tiny_checkpoint(sys.argv[1], model_type='roberta')\n"
  ),
}


@pytest.mark.parametrize("use", sorted(USES))
def test_no_pytorch_notice_without_torch(tmp_path, use):
  script = _HIDE_TORCH + USES[use] + _CHECK
  result = subprocess.run(
    [sys.executable, "-c", script, str(tmp_path / "model")],
    cwd=tmp_path,
    env=cache_env(),
    capture_output=True,
    text=True,
    timeout=300,
    check=False,
  )
  assert result.returncode == 0, result.stderr
  assert "another transformers warning" in result.stderr, result.stderr
  assert _transformers.TORCH_NOTICE.split(".")[0] not in result.stderr, result.stderr


def test_pats_jax_imports_transformers_only_through_the_filter():
  package = REPO_ROOT / "pats_jax"
  direct = re.compile(r"^\s*(import transformers|from transformers\b)", re.MULTILINE)
  offenders = [
    str(path.relative_to(REPO_ROOT))
    for path in package.rglob("*.py")
    if path != package / "models" / "_transformers.py" and direct.search(path.read_text())
  ]
  assert not offenders, f"import transformers via _transformers.import_transformers: {offenders}"

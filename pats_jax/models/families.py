"""The model families `load` reads, by config.json `model_type`: the one place to register one.

To add a family, write its module (layers, config class, tensor specs, tiny config and a
`registry.Family` record; see `electra.py` for a small one) and add its record here.
"""

from __future__ import annotations

from pats_jax.models import bert, electra, modernbert, registry

FAMILIES: tuple[registry.Family, ...] = (
  bert.BERT,
  bert.ROBERTA,
  electra.ELECTRA,
  modernbert.MODERNBERT,
)
registry.register(*FAMILIES)

SUPPORTED_MODEL_TYPES = registry.model_types()

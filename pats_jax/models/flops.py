r"""The analytic FLOP count of a training step, for model FLOPs utilisation (MFU).

For a BERT encoder with L layers, width H, feed-forward width I, C classes, batch B and
sequence length S, a forward pass costs, per token and layer, `2 (4 H² + 2 H I)` FLOPs in
the weight matrices (Q, K, V, attention output: 4 H² weights; feed-forward: 2 H I; 2 FLOPs
per multiply-add) and `4 S H` in attention (`Q Kᵀ` and `P V`, each S·H multiply-adds per
token over all heads). The backward pass costs twice the forward (gradients with respect to
inputs and to weights), so one training step costs

  F = 6 · B·S · P + 12 · B · L · H · S² + 6 · B · (H² + H·C),   P = L · (4 H² + 2 H I),

the last term being the pooler and classifier on the first token. Embedding look-ups,
biases, LayerNorms, softmax and GELU (O(H) or O(S) per token) are not counted. This is the
usual "model FLOPs" convention (Kaplan et al., "Scaling laws for neural language models",
2020, section 2.1; Chowdhery et al., "PaLM", 2022, appendix B). The model computes its last
layer for the first token only (the classifier reads nothing else), so the step does about
(1 − 1/L) of F's encoder work plus the last layer's keys and values: F slightly overstates
the work done, and MFU = F / time / peak is the conventional, comparable figure. FLOPs for
MFU are counted this way, never read from XLA's cost analysis.

DeBERTa's disentangled attention (config.json `relative_attention`, `deberta.py`) adds, per
layer and per relative term t of `pos_att_type` (c2p, p2c), the projection of the R rows of the
relative-position table that the length reaches (R = `deberta.relative_index`'s row count, at
most min(2S - 1, 2 · span)) through the query or key weights, 2 R H² FLOPs once per step, and
the scores of every query (c2p) or key (p2c) against those rows, 2 S R H per sequence (the
gather that picks δ(q, k) costs none); with T terms a step adds

  F_rel = 6 · T · L · (R · H² + B · S · R · H).
"""

from __future__ import annotations

from collections.abc import Mapping

from pats_jax.models import deberta
from pats_jax.models.config import ModelConfig


def train_step_flops(
  shape: Mapping[str, int], *, batch_size: int, length: int, classes: int = 2
) -> int:
  """F of the module docstring: analytic FLOPs of one training step (forward + backward).

  Args:
    shape: config.json fields `num_hidden_layers`, `hidden_size` and `intermediate_size` (a
      dict, or use `dataclasses.asdict` of a `ModelConfig`); with `relative_attention` true
      (DeBERTa), a whole config.json, whose relative terms add F_rel.
    batch_size: B, the rows of the step (all devices together).
    length: S, the padded sequence length.
    classes: C, the classifier's outputs.

  Returns:
    The FLOPs of one step.
  """
  L, H = shape["num_hidden_layers"], shape["hidden_size"]
  I = shape["intermediate_size"]  # noqa: E741
  P = L * (4 * H * H + 2 * H * I)
  return (
    6 * batch_size * length * P
    + 12 * batch_size * L * H * length**2
    + 6 * batch_size * (H * H + H * classes)
    + relative_attention_flops(shape, batch_size=batch_size, length=length)
  )


def relative_attention_flops(shape: Mapping, *, batch_size: int, length: int) -> int:
  """F_rel of the module docstring: DeBERTa's relative-position terms in one training step
  (0 unless `shape["relative_attention"]`)."""
  if not shape.get("relative_attention"):
    return 0
  config = ModelConfig.from_hf_dict(dict(shape), num_labels=shape.get("num_labels", 2))
  terms = sum(term in config.pos_att_type for term in deberta.POSITION_TERMS)
  _, first, stop = deberta.relative_index(config, length)
  rows, L, H = stop - first, config.num_hidden_layers, config.hidden_size
  return 6 * terms * L * (rows * H * H + batch_size * length * rows * H)

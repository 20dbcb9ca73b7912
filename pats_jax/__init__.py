"""PATS (Perturbation According To Sensitivity) for JAX/Flax.

The optimizer side lives here: `pats` (the optax transformation), its state and
analysis helpers, the ready `pats_adamw`, and the baselines' optimizer parts (`adamw`,
`sage`, `sage_adamw`, `noisytune`). Models, data, metrics and the trainer are subpackages
(`pats_jax.models`, `pats_jax.data`, `pats_jax.metrics`, `pats_jax.training`), imported
on demand so that `import pats_jax` stays light.
"""

from pats_jax._adamw import adamw, pats_adamw, sage_adamw
from pats_jax._masks import (
  all_leaves_mask,
  decay_mask,
  encoder_linear_mask,
  unfrozen_mask,
  weight_matrix_mask,
)
from pats_jax._noisytune import noisytune
from pats_jax._pats import (
  MatrixStatistics,
  PatsState,
  find_pats_state,
  noise_amplitude,
  pats,
  pats_statistics,
)
from pats_jax._sage import SageState, sage

__all__ = [
  "MatrixStatistics",
  "PatsState",
  "SageState",
  "adamw",
  "all_leaves_mask",
  "decay_mask",
  "encoder_linear_mask",
  "find_pats_state",
  "noise_amplitude",
  "noisytune",
  "pats",
  "pats_adamw",
  "pats_statistics",
  "sage",
  "sage_adamw",
  "unfrozen_mask",
  "weight_matrix_mask",
]

r"""Base GLUE fine-tuning config: the per-task protocol, the methods and the model names.

The protocol follows the Hugging Face GLUE example (`run_flax_glue.py` README): 3 epochs (5 for
MRPC and WNLI), batch 32, learning rate 2e-5, maximum length 128, AdamW with weight decay 0.01 on
weight matrices, linear warm-up (10% of the optimizer steps) then linear decay to 0. The best
checkpoint is picked on the task's metric (`TaskSpec.best_metric`: CoLA Matthews correlation,
MRPC/QQP mean of F1 and accuracy, STS-B mean of Pearson and Spearman, the rest accuracy).

Usage:

  python train.py --config configs/glue.py:task=rte,method=pats,model=bert-base-uncased,seed=1 \
      --workdir workdirs/rte_pats_bert_s1

Arguments (comma separated `key=value`, all optional): `task` (a GLUE task, default `rte`),
`method` (one of `METHODS`, default `pats`), `model` (a name in `pats_jax.training.sources` or a
local Hugging Face folder, default `all-MiniLM-L6-v2`), `seed` (default 0).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

METHODS = ("plain", "pats", "noisytune", "uniform", "inverse", "sage", "add_noise")

# Per-task protocol: (number of epochs, learning rate). Everything else is shared.
TASK_PROTOCOL = {
  "cola": (3, 2e-5),
  "sst2": (3, 2e-5),
  "mrpc": (5, 2e-5),
  "qqp": (3, 2e-5),
  "stsb": (3, 2e-5),
  "mnli": (3, 2e-5),
  "qnli": (3, 2e-5),
  "rte": (3, 2e-5),
  "wnli": (5, 2e-5),
}


def parse_arg(arg: str | None, **defaults: str) -> dict[str, str]:
  """Parses a big_vision-style `"k1=v1,k2=v2"` config argument over `defaults`.

  Args:
    arg: the text after `:` in `--config file.py:arg`, or None.
    **defaults: the accepted keys and their default values.

  Returns:
    `defaults` updated with the argument's values (all strings).

  Raises:
    ValueError: an item is not `key=value`, or the key is not one of `defaults`.
  """
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
      raise ValueError(f"config argument {item!r} is not key=value (in {arg!r})")
    if key not in values:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; expected {sorted(values)}")
    values[key] = value.strip()
  return values


def set_method(config: ml_collections.ConfigDict, method: str) -> None:
  """Sets `config.method`, adjusting the fields a method's usual protocol changes.

  SAGE is run with a 2.5x learning rate (Liang et al. 2022 use 2-5x the usual one).
  """
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
  config.method = method
  if method == "sage":
    config.learning_rate *= 2.5


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the GLUE fine-tuning config for `arg` = `"task=..,method=..,model=..,seed=.."`."""
  args = parse_arg(arg, task="rte", method="pats", model="all-MiniLM-L6-v2", seed="0")
  task = args["task"].lower().replace("-", "")
  if task not in TASK_PROTOCOL:
    raise ValueError(f"unknown task {args['task']!r}; expected one of {sorted(TASK_PROTOCOL)}")
  num_epochs, learning_rate = TASK_PROTOCOL[task]

  config = ml_collections.ConfigDict()
  config.task = task
  config.model = args["model"]  # A name known to pats_jax.training.sources or a local folder.
  config.seed = int(args["seed"])

  config.data = ml_collections.ConfigDict()
  # GLUE TSV folder (download_glue_data.py layout). "" searches $GLUE_DIR, ./glue_data and
  # ../shared/data/glue, then falls back to the Hugging Face hub. "tiny" writes a synthetic one.
  config.data.data_dir = ""
  config.data.source = "auto"  # pats_jax.data.load_glue source: auto, local, hub, tfds.
  config.data.cache_dir = ""  # Tokenisation cache; "" = none.
  config.data.max_length = 128
  config.data.bucket_multiple = 16
  # Custom data (pats_jax.data.load_custom) instead of GLUE when train_file is set.
  config.data.custom = ml_collections.ConfigDict()
  config.data.custom.train_file = ""
  config.data.custom.dev_file = ""
  config.data.custom.text_column = "text"
  config.data.custom.text_pair_column = ""
  config.data.custom.label_column = "label"
  config.data.custom.task_type = "classification"  # Or "regression".

  config.model_config = ml_collections.ConfigDict()
  config.model_config.dtype = "float32"  # Compute dtype; "bfloat16" for bf16 compute.
  config.model_config.param_dtype = "float32"
  config.model_config.attention = "auto"
  config.model_config.remat = False
  config.model_config.hidden_dropout = config_dict.placeholder(float)  # None: checkpoint's.
  config.model_config.attention_dropout = config_dict.placeholder(float)

  config.num_epochs = num_epochs
  config.max_steps = -1  # > 0 stops early (smoke tests); the schedule still spans all epochs.
  config.batch_size = 32  # Global batch per optimizer update (all processes, all micro-steps).
  config.eval_batch_size = 64
  config.grad_accum_steps = 1  # Micro-batches per update (optax.MultiSteps).
  config.learning_rate = learning_rate
  config.warmup_ratio = 0.1  # Share of the optimizer steps with linear warm-up.
  config.weight_decay = 0.01
  config.adam_b1 = 0.9
  config.adam_b2 = 0.999
  config.adam_eps = 1e-6
  config.grad_clip_norm = 1.0  # 0 disables clipping.
  config.apply_if_finite = False  # True: skip non-finite steps instead of stopping.
  config.max_consecutive_nonfinite = 5

  config.method = "plain"
  config.tag = ""  # A variant's name, appended to the method's label in sweep tables.
  config.pats = ml_collections.ConfigDict()
  # lambda of PATS_SPEC step 5 (peak value); 0.01 is the tuned value of results/GLUE_MINILM.md.
  config.pats.noise_scale = 0.01
  config.pats.noise_schedule = "lr_shape"  # "lr_shape": lambda follows the LR; "constant".
  config.pats.beta1 = 0.85
  config.pats.beta2 = config_dict.placeholder(float)  # None: no uncertainty term.
  config.pats.sensitivity = "taylor"
  config.pats.normalize = "minmax"
  config.pats.direction = "normal"
  config.pats.distribution = "uniform"
  config.pats.noise_on_embeddings = True  # False: no noise on the embedding tables.
  config.pats.ema_dtype = ""  # "" = parameter dtype; "bfloat16" halves the EMA memory.
  # True: one batched reduction per group of same-shaped leaves for std and min/max (fewer
  # kernels on GPU/TPU; results equal up to float32 rounding). See results/PERFORMANCE.md.
  config.pats.batch_reductions = False
  config.noisytune = ml_collections.ConfigDict()
  config.noisytune.scale = 0.15
  config.sage = ml_collections.ConfigDict()
  config.sage.beta3 = 0.85
  config.add_noise = ml_collections.ConfigDict()
  config.add_noise.eta = 0.01
  config.add_noise.gamma = 0.55
  set_method(config, args["method"])

  config.best_metric = ""  # "" = the task's TaskSpec.best_metric.
  config.eval_every_steps = -1  # -1: every epoch; 0: only at the end; N: every N steps.
  config.log_every_steps = 1
  config.checkpoint_every_steps = 200  # Also at every evaluation and on SIGTERM; 0: never.
  config.keep_checkpoints = 2
  config.write_test_predictions = True
  config.tensorboard = False
  config.progress_bar = True

  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # -1: all devices not used by fsdp.
  config.mesh.fsdp = 1

  config.distributed = ml_collections.ConfigDict()
  config.distributed.initialize = "auto"  # "auto" (cluster env vars), "yes" or "no".
  config.distributed.coordinator_address = ""
  config.distributed.num_processes = 0
  config.distributed.process_id = -1
  config.distributed.cpu_collectives = "gloo"  # For multi-process CPU runs.
  return config

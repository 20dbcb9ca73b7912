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
`method` (one of `METHODS`, default `pats`), `model` (a name in `pats_jax.training.sources`, e.g.
`bert-base`, `roberta-large`, `electra-base`, `modernbert-base`, `deberta-v3-base`, see
docs/models.md; a hub id; or a local Hugging Face folder; default `all-MiniLM-L6-v2`), `seed`
(default 0).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from pats_jax.training.optimizers import METHODS

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
  config.task = task  # GLUE task: cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte or wnli.
  config.model = args["model"]  # Model name (see pats_jax.training.sources), hub id or folder.
  config.seed = int(args["seed"])  # Seed of the head, dropout, noise and data order.
  # Dropout's random generator: threefry2x32 (the same masks on any mesh), rbg or unsafe_rbg
  # (the accelerator's bit generator: far cheaper on TPU; see docs/algorithm.md).
  config.dropout_key_impl = "threefry2x32"

  config.data = ml_collections.ConfigDict()
  # GLUE folder in the download_glue_data.py layout; "" searches $GLUE_DIR, ./glue_data, then
  # the hub dataset nyu-mll/glue; "tiny" writes a synthetic one into the workdir.
  config.data.data_dir = ""
  config.data.source = "auto"  # GLUE reader: auto (local, else hub), local, hf or tfds.
  config.data.cache_dir = ""  # Folder caching tokenised splits; "" = no cache.
  config.data.max_length = 128  # Longest input in tokens; longer ones are truncated.
  config.data.bucket_multiple = 16  # Batches are padded to a multiple of this length.
  config.data.custom = ml_collections.ConfigDict()
  config.data.custom.train_file = ""  # Your own .csv/.tsv/.jsonl training file instead of GLUE.
  config.data.custom.dev_file = ""  # Your own evaluation file (needed with train_file).
  config.data.custom.text_column = "text"  # Column of the (first) text in your files.
  config.data.custom.text_pair_column = ""  # Column of the second text of pairs; "" = none.
  config.data.custom.label_column = "label"  # Column of the labels in your files.
  config.data.custom.task_type = "classification"  # classification or regression.

  config.model_config = ml_collections.ConfigDict()
  config.model_config.dtype = "float32"  # Compute dtype: float32, bfloat16 or float16.
  config.model_config.param_dtype = "float32"  # Parameter dtype: float32, bfloat16 or float16.
  config.model_config.attention = "auto"  # Attention kernel: auto, xla or cudnn.
  config.model_config.remat = False  # True recomputes activations (less memory, more time).
  # What remat keeps: full (nothing), dots (matmul outputs), dots_no_batch (dense outputs).
  config.model_config.remat_policy = "full"
  config.model_config.scan_layers = False  # True stacks the layers and runs them as one nn.scan.
  # With scan_layers: layers per loop iteration; 0 runs all without a loop (GPU: fewer kernels).
  config.model_config.scan_unroll = 1
  # Dropout after embeddings and sublayers; None keeps the checkpoint's value.
  config.model_config.hidden_dropout = config_dict.placeholder(float)
  # Dropout of attention probabilities; None keeps the checkpoint's value.
  config.model_config.attention_dropout = config_dict.placeholder(float)

  config.num_epochs = num_epochs  # Passes over the training data.
  config.max_steps = -1  # > 0 stops after this many micro-steps (the schedule spans all epochs).
  config.batch_size = 32  # Global batch per optimizer update (all processes, all micro-steps).
  config.eval_batch_size = 64  # Global batch of evaluation and prediction.
  config.grad_accum_steps = 1  # Micro-batches per optimizer update (optax.MultiSteps).
  config.learning_rate = learning_rate  # Peak learning rate of the linear warm-up and decay.
  config.warmup_ratio = 0.1  # Share of the optimizer updates with linear warm-up, in [0, 1).
  config.weight_decay = 0.01  # AdamW decoupled weight decay of the weight matrices.
  config.adam_b1 = 0.9  # AdamW first-moment decay.
  config.adam_b2 = 0.999  # AdamW second-moment decay.
  config.adam_eps = 1e-6  # AdamW epsilon.
  config.grad_clip_norm = 1.0  # Clip gradients to this global norm; 0 disables clipping.
  config.apply_if_finite = False  # True skips steps with a non-finite loss or gradient, not stops.
  config.max_consecutive_nonfinite = 5  # With apply_if_finite: stop after this many skips.

  config.method = "plain"  # plain, pats, uniform, inverse, noisytune, sage or add_noise.
  config.tag = ""  # A variant's name, appended to the method's label in sweep tables.
  config.pats = ml_collections.ConfigDict()
  config.pats.noise_scale = 0.01  # Peak noise scale lambda (docs/algorithm.md, step 5), >= 0.
  config.pats.noise_schedule = "lr_shape"  # lr_shape: lambda follows the LR; or constant.
  config.pats.beta1 = 0.85  # EMA decay of the sensitivity.
  config.pats.beta2 = config_dict.placeholder(float)  # EMA decay of the uncertainty; None: off.
  config.pats.sensitivity = "taylor"  # Sensitivity: taylor (|theta * grad|) or gradient.
  config.pats.normalize = "minmax"  # Sensitivity normalisation: minmax, rank or none.
  config.pats.direction = "normal"  # normal: less noise where sensitive; inverse: more.
  config.pats.distribution = "uniform"  # Noise distribution: uniform or gaussian.
  config.pats.noise_on_embeddings = True  # False: no noise on the embedding tables.
  config.pats.ema_dtype = ""  # EMA dtype; "" = the parameters'; bfloat16 halves the memory.
  # Per-matrix statistics of steps 4-5: current (this step's, as the paper) or previous (those
  # the last update took of its inputs: one pass over each matrix instead of two;
  # docs/algorithm.md, "One pass").
  config.pats.statistics = "current"
  # The noise's random generator: threefry2x32 (the same noise on any device count), rbg or
  # unsafe_rbg (the accelerator's bit generator: cheaper on TPU; see docs/algorithm.md).
  config.pats.key_impl = "threefry2x32"
  config.noisytune = ml_collections.ConfigDict()
  config.noisytune.scale = 0.15  # NoisyTune perturbation scale (relative to each matrix's std).
  config.sage = ml_collections.ConfigDict()
  config.sage.beta3 = 0.85  # SAGE EMA decay of the sensitivity.
  # Leaves SAGE scales: encoder_linear (the encoder layers' linear layers, as SAGE's code) or all.
  config.sage.scaled_leaves = "encoder_linear"
  config.sage.scale_weight_decay = False  # True: SAGE also scales AdamW's weight decay.
  config.add_noise = ml_collections.ConfigDict()
  config.add_noise.eta = 0.01  # Gradient-noise variance eta (optax.add_noise).
  config.add_noise.gamma = 0.55  # Gradient-noise decay exponent gamma (optax.add_noise).
  set_method(config, args["method"])

  config.best_metric = ""  # Dev metric that picks the best checkpoint; "" = the task's own.
  config.eval_every_steps = -1  # -1: every epoch; 0: only at the end; N: every N steps.
  config.log_every_steps = 1  # Write training metrics every N micro-steps.
  # PATS statistics (the pats/* metrics: a second pass over every noised matrix, on the device)
  # on the logged steps that are multiples of N, and on the last; 1: on every logged step.
  config.pats_stats_every_steps = 100
  config.checkpoint_every_steps = 200  # Also at every evaluation and on SIGTERM; 0: never.
  config.keep_checkpoints = 2  # Newest checkpoints kept in <workdir>/checkpoints.
  config.write_test_predictions = True  # Write GLUE test predictions to glue_submission/.
  config.tensorboard = False  # Also write TensorBoard summaries to the workdir.
  config.progress_bar = True  # Show a tqdm progress bar.

  config.mesh = ml_collections.ConfigDict()
  config.mesh.data = -1  # Devices along the data axis; -1: all devices not used by fsdp.
  config.mesh.fsdp = 1  # Devices that shard the parameters (fully sharded data parallel).

  config.distributed = ml_collections.ConfigDict()
  config.distributed.initialize = "auto"  # auto (cluster env vars), yes or no.
  config.distributed.coordinator_address = ""  # host:port of process 0; "" = from the cluster.
  config.distributed.num_processes = 0  # Processes of a multi-process run; 0 = from the cluster.
  config.distributed.process_id = -1  # This process's index; -1 = from the cluster.
  config.distributed.cpu_collectives = "gloo"  # Collectives of multi-process CPU runs.
  return config

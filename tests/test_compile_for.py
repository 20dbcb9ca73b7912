"""`train.py --compile_for=<slice>`: a run's steps compiled for a TPU slice on this machine's CPU.

The dry runs need the TPU compiler, libtpu (`pip install -e ".[tpu]"`, which CI installs);
without it they are skipped with that reason, and the message that says how to install it is
checked instead. The slice names, the known model shapes and the reading of compiled programs
are checked without libtpu. No test bounds a time or an estimate: those belong to benchmarks.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import jax
import pytest
from _train_helpers import REPO_ROOT, cache_env, tiny_config

from pats_jax.models import known, loader, tiny
from pats_jax.models.classifier import SequenceClassifier
from pats_jax.models.config import ModelConfig
from pats_jax.training import compiled_program, dry_run, sources, tpu_slices

NO_LIBTPU = importlib.util.find_spec("libtpu") is None
needs_libtpu = pytest.mark.skipif(
  NO_LIBTPU, reason='libtpu (the TPU compiler) is not installed: pip install -e ".[tpu]"'
)
STEP_TITLES = ("train step", "eval step", "PATS statistics step")


def _dry_run(tmp_path, slice_name: str, *overrides: str, config: str = "configs/tiny.py", env=None):
  """Runs `train.py --compile_for=<slice_name>` as a user would (no JAX_PLATFORMS set)."""
  workdir = tmp_path / "workdir"
  command = [
    sys.executable,
    str(REPO_ROOT / "train.py"),
    f"--config={REPO_ROOT / config}",
    f"--workdir={workdir}",
    f"--compile_for={slice_name}",
    *overrides,
  ]
  environment = {key: value for key, value in cache_env().items() if key != "JAX_PLATFORMS"}
  environment.update(env or {})
  result = subprocess.run(
    command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=1800
  )
  assert not workdir.exists(), "a dry run must not create the workdir"
  return result


def _one_error(result) -> str:
  """The single `train.py: error:` message of a run that stopped with exit status 2."""
  errors = [line for line in result.stderr.splitlines() if line.startswith("train.py: error:")]
  assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr
  assert len(errors) == 1, result.stderr
  return errors[0]


@needs_libtpu
def test_tiny_run_compiles_for_a_v5e_2x2(tmp_path):
  result = _dry_run(tmp_path, "v5e:2x2")
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  out = result.stdout
  assert "TPU v5e-4 (topology v5e:2x2: 4 chips, 1 host)" in out
  assert f"libtpu {tpu_slices.libtpu_version()}" in out
  assert "train batch 8 (2 per chip) x 32 tokens" in out
  sections = out.split("\n")
  starts = [sections.index(title) for title in STEP_TITLES]
  assert starts == sorted(starts), out
  for start in starts:
    labels = [row.split()[0] for row in sections[start + 1 : start + 6]]
    assert labels == ["memory", "kernels", "collectives", "compile", "est."], out
  train = sections[starts[0] + 1 : starts[0] + 6]
  assert "of 16.00 GiB HBM" in train[0]
  assert "all-reduce x1" in train[2]  # The gradients of a data-parallel step.
  assert "(compiler's estimate)" in train[4] and "est. MFU" in train[4]
  assert "Fits: the largest step needs" in out
  assert result.stderr.strip() == "", result.stderr  # libtpu's start-up warnings are kept quiet.


@needs_libtpu
def test_tiny_deberta_compiles_with_fsdp_stacked_layers_and_bfloat16(tmp_path):
  # DeBERTa's disentangled attention and its relative-position table (outside the scanned
  # layers) under FSDP over the 4 chips: the parameters are gathered, not replicated.
  result = _dry_run(
    tmp_path,
    "v5e:2x2",
    "--config.model_config.scan_layers=True",
    "--config.mesh.fsdp=4",
    "--config.model_config.dtype=bfloat16",
    config="configs/tiny.py:model=tiny-deberta",
  )
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  out = result.stdout
  assert "Model tiny-deberta: 2 layers" in out and "layers stacked (scan_layers)" in out
  assert "Mesh data=1 x fsdp=4" in out
  train = out.split("\n")[out.split("\n").index(STEP_TITLES[0]) + 1 :]
  assert "all-gather" in train[2], out
  assert "Fits: the largest step needs" in out


@needs_libtpu
def test_a_run_that_does_not_fit_stops_with_one_message(tmp_path):
  # A real model that cannot fit: 2**27 vocabulary rows of width 32 are 16 GiB of float32
  # embeddings, replicated on every chip with their two AdamW moments. Only its config.json
  # is needed.
  model = tmp_path / "huge_vocabulary"
  model.mkdir()
  (model / "config.json").write_text(json.dumps(tiny.tiny_config(vocab_size=2**27)))
  result = _dry_run(
    tmp_path, "v5e:2x2", f"--config.model={model}", config="configs/tiny.py:method=plain"
  )
  error = _one_error(result)
  assert "the run does not fit TPU v5e-4 (v5e:2x2)" in error
  assert "HBM" in error and "--config.mesh.fsdp=4" in error and "batch_size" in error


def test_a_slice_typo_is_one_message_with_the_closest_name(tmp_path):
  error = _one_error(_dry_run(tmp_path, "v5e-2x2"))
  assert "--compile_for=v5e-2x2: not a slice name. Did you mean v5e:2x2?" in error
  assert "v5e-256" in error and "v4-8" in error  # Examples of valid names.


@pytest.mark.parametrize(
  ("typo", "suggestion"),
  [("v5e-255", "v5e-256"), ("v5e-2", "v5e-4"), ("v4:2x2", "v4:2x2x1"), ("v5x-8", "v5p-8")],
)
def test_the_closest_slice_name_is_suggested(typo, suggestion):
  with pytest.raises(tpu_slices.SliceError, match=f"Did you mean {suggestion}[?]"):
    tpu_slices.parse_slice(typo)


def test_without_libtpu_the_message_says_how_to_install_it(tmp_path):
  shim = tmp_path / "no_libtpu" / "libtpu"
  shim.mkdir(parents=True)
  (shim / "__init__.py").write_text("raise ImportError('libtpu is hidden by this test')\n")
  env = {"PYTHONPATH": f"{shim.parent}:{REPO_ROOT}", "TPU_LIBRARY_PATH": ""}
  error = _one_error(_dry_run(tmp_path, "v5e-4", env=env))
  assert "libtpu" in error and "not installed" in error
  assert 'pip install -e ".[tpu]"' in error
  assert f'pip install "jax[tpu]=={jax.__version__}"' in error


@pytest.mark.parametrize(
  ("name", "topology", "chips", "host_bounds"),
  [
    ("v5e-256", "v5e:16x16", 256, (2, 2, 1)),
    ("v5litepod-16", "v5e:4x4", 16, (2, 2, 1)),
    ("v5e-4", "v5e:2x2", 4, (2, 2, 1)),
    ("v6e-8", "v6e:2x4", 8, (2, 4, 1)),  # One host of 8 chips.
    ("v6e-1", "v6e:1x1", 1, (1, 1, 1)),
    ("v4-8", "v4:2x2x1", 4, (2, 2, 1)),
    ("v4-32", "v4:2x2x4", 16, (2, 2, 1)),  # v4 names count TensorCores, two per chip.
    ("v5p-128", "v5p:4x4x4", 64, (2, 2, 1)),
    ("v5e:2x2", "v5e:2x2", 4, (2, 2, 1)),
    ("V5E:2x4", "v5e:2x4", 8, (2, 4, 1)),
    ("v5e:8x16", "v5e:8x16", 128, (2, 2, 1)),
    ("v4:2x2x2", "v4:2x2x2", 8, (2, 2, 1)),
  ],
)
def test_slice_names_give_cloud_tpu_shapes_and_hosts(name, topology, chips, host_bounds):
  slice_ = tpu_slices.parse_slice(name)
  assert (slice_.topology, slice_.chips, slice_.chips_per_host_bounds) == (
    topology,
    chips,
    host_bounds,
  )
  assert tpu_slices.parse_slice(slice_.name) == slice_  # The Cloud TPU name names it again.


@pytest.mark.parametrize(
  "name", ["v5e-2", "v5e-512", "v4-6", "v5e:3x3", "v5e:2x2x2", "v5e:0x2", "tpu", "v7-8"]
)
def test_names_of_no_slice_are_refused(name):
  with pytest.raises(tpu_slices.SliceError, match="Name a slice as Cloud TPU does"):
    tpu_slices.parse_slice(name)


# The parameters of transformers' <Type>ForSequenceClassification with 2 labels.
HF_PARAMETER_COUNTS = {
  "sentence-transformers/all-MiniLM-L6-v2": 22_713_986,
  "google-bert/bert-base-uncased": 109_483_778,
  "google-bert/bert-large-uncased": 335_143_938,
  "FacebookAI/roberta-base": 124_647_170,
  "FacebookAI/roberta-large": 355_361_794,
  "google/electra-base-discriminator": 109_483_778,
  "google/electra-large-discriminator": 335_143_938,
  # transformers' count plus layer 0's attention-norm scale [E], which ModernBERT lacks and
  # our layers keep unused so that every layer has one structure.
  "answerdotai/ModernBERT-base": 149_606_402 + 768,
  "answerdotai/ModernBERT-large": 395_833_346 + 1024,
  "microsoft/deberta-v3-base": 184_423_682,
  "microsoft/deberta-v3-large": 435_063_810,
}


def test_known_models_have_their_checkpoints_shapes():
  assert set(known.KNOWN_CONFIGS) == set(sources.MODEL_HUB_IDS.values())
  for hub_id, count in HF_PARAMETER_COUNTS.items():
    config = ModelConfig.from_hf_dict(known.known_config(hub_id), num_labels=2)
    params = loader.abstract_params(SequenceClassifier(config))
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == count, hub_id


def test_known_minilm_shape_is_that_of_its_config_json(minilm_dir):
  on_disk = json.loads((minilm_dir / "config.json").read_text())
  for key, value in known.known_config(sources.MINILM_HUB_ID).items():
    assert on_disk.get(key, value) == value, key


# A module in the form of the TPU compiler's optimised HLO: a loop whose trip count is read
# from its condition, one with a known trip count, a fused all-gather, a plain all-reduce,
# scalar integer ops and a kernel without a cost estimate.
HLO = """\
HloModule test, entry_computation_layout={(f32[8,128]{1,0}, bf16[2,64]{1,0})->f32[8,128]{1,0}}

%fused_add (p0: f32[8,128]) -> f32[8,128] {
  %p0 = f32[8,128]{1,0:T(8,128)} parameter(0)
  ROOT %add.1 = f32[8,128]{1,0:T(8,128)} add(%p0, %p0)
}

%gathered (p: bf16[2,64]) -> bf16[8,64] {
  %p = bf16[2,64]{1,0} parameter(0)
  ROOT %all-gather.1 = bf16[8,64]{1,0} all-gather(%p), channel_id=1, dimensions={0}
}

%gathered_rest (p: bf16[2,64]) -> bf16[8,64] {
  %p = bf16[2,64]{1,0} parameter(0)
  ROOT %all-gather.2 = bf16[8,64]{1,0} all-gather(%p), channel_id=1, dimensions={0}
}

%sum (x: f32[], y: f32[]) -> f32[] {
  %x = f32[] parameter(0)
  %y = f32[] parameter(1)
  ROOT %add.2 = f32[] add(%x, %y)
}

%body (state: (s32[], f32[8,128])) -> (s32[], f32[8,128]) {
  %state = (s32[], f32[8,128]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %x.1 = f32[8,128]{1,0} get-tuple-element(%state), index=1
  %one = s32[] constant(1)
  %next = s32[] add(%i, %one)
  %y.1 = f32[8,128]{1,0} fusion(%x.1), kind=kLoop, calls=%fused_add, \
backend_config={"window_config":{"estimated_cycles":"100"}}
  ROOT %out = (s32[], f32[8,128]{1,0}) tuple(%next, %y.1)
}

%cond (state: (s32[], f32[8,128])) -> pred[] {
  %state = (s32[], f32[8,128]{1,0}) parameter(0)
  %i = s32[] get-tuple-element(%state), index=0
  %n = s32[]{:T(128)} constant(12)
  ROOT %lt = pred[] compare(%i, %n), direction=LT
}

ENTRY %main (a: f32[8,128], b: bf16[2,64]) -> f32[8,128] {
  %a = f32[8,128]{1,0} parameter(0)
  %b = bf16[2,64]{1,0} parameter(1)
  %zero = s32[] constant(0)
  %init = (s32[], f32[8,128]{1,0}) tuple(%zero, %a)
  %loop = (s32[], f32[8,128]{1,0}) while(%init), condition=%cond, body=%body
  %again = (s32[], f32[8,128]{1,0}) while(%loop), condition=%cond, body=%body, \
backend_config={"known_trip_count":{"n":"3"}}
  %res = f32[8,128]{1,0} get-tuple-element(%again), index=1
  %g = bf16[8,64]{1,0} fusion(%b), kind=kCustom, calls=%gathered, \
backend_config={"estimated_cycles":"50"}
  %g.rest = bf16[8,64]{1,0} fusion(%b), kind=kCustom, calls=%gathered_rest, \
backend_config={"estimated_cycles":"50"}
  %key = u32[] xor(%zero, %zero)
  %flat = f32[4,256]{1,0} reshape(%res)
  ROOT %s = f32[8,128]{1,0} all-reduce(%res), replica_groups={}, to_apply=%sum
}
"""


def test_program_counts_follow_loops_and_fused_collectives():
  tally = compiled_program.hlo_stats(HLO)
  assert tally.loops == [(12, True), (3, True)]
  assert (tally.kernels, tally.fusions, tally.unestimated_kernels) == (18, 17, 1)
  assert dict(tally.unestimated) == {"reshape": 1}
  assert tally.estimated_cycles == 15 * 100 + 2 * 50
  assert tally.scalar_ops == 15 + 1  # The loop counters' adds and the key's xor.
  # The all-gather's start and continuation kernels hold one collective (channel 1).
  assert dict(tally.collectives) == {"all-gather": 1, "all-reduce": 1}
  assert dict(tally.collective_bytes) == {"all-gather": 8 * 64 * 2, "all-reduce": 8 * 128 * 4}


def test_kernel_costs_split_the_estimate_by_kernel():
  costs = compiled_program.kernel_costs(HLO)
  assert (
    sum(cost.estimated_cycles for cost in costs) == compiled_program.hlo_stats(HLO).estimated_cycles
  )
  assert [(c.name, c.times, c.estimated_cycles) for c in costs] == [
    ("y.1", 12, 1200),
    ("y.1", 3, 300),
    ("g", 1, 50),
    ("g.rest", 1, 50),  # A collective's continuation kernel is a kernel with its own cost.
  ]
  assert (costs[0].kind, costs[0].shape, costs[0].body) == (
    "fusion (Loop)",
    "f32[8,128]{1,0}",
    "add×1",
  )
  groups = compiled_program.kernel_groups(costs)
  assert [(g["kind"], g["count"], g["cycles"]) for g in groups] == [
    ("fusion (Loop)", 15, 1500),
    ("fusion (Custom)", 2, 100),
  ]


def test_memory_total_counts_donated_buffers_once():
  memory = compiled_program.Memory(arguments=10, outputs=8, aliased=6, temporaries=5, code=1)
  assert memory.total == 10 + 8 - 6 + 5 + 1


def test_statistics_interval_is_that_of_the_trainer():
  # The trainer computes the PATS statistics on logged steps that are multiples of
  # pats_stats_every_steps: every lcm of the two steps.
  config = tiny_config(log_every_steps=4, pats_stats_every_steps=6)
  assert dry_run.statistics_interval(config) == 12
  config = tiny_config(log_every_steps=1, pats_stats_every_steps=100)
  assert dry_run.statistics_interval(config) == 100

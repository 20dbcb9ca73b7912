"""Two processes on localhost (JAX CPU collectives over gloo) give the same run as one process."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from _train_helpers import cache_env, train_command

RUN = {
  "max_steps": 4,
  "eval_every_steps": 2,
  "checkpoint_every_steps": 2,
  "mesh__data": -1,
  "batch_size": 8,
  "eval_batch_size": 16,
  "write_test_predictions": False,
}


def _free_port() -> int:
  with socket.socket() as sock:
    sock.bind(("localhost", 0))
    return sock.getsockname()[1]


def _losses(workdir):
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return [(line["step"], line["loss"]) for line in lines if "loss" in line]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  env = cache_env()
  single, multi = tmp_path / "single", tmp_path / "multi"
  subprocess.run(train_command(single, **RUN), env=env, check=True, capture_output=True)
  port = _free_port()
  processes = [
    subprocess.Popen(
      train_command(
        multi,
        **RUN,
        **{
          "distributed.coordinator_address": f"localhost:{port}",
          "distributed.num_processes": 2,
          "distributed.process_id": i,
          "distributed.cpu_collectives": "gloo",
        },
      ),
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [process.communicate(timeout=600)[0] for process in processes]
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-3000:]
  assert "process 0 of 2" in outputs[0] and "process 1 of 2" in outputs[1]
  expected = json.loads((single / "results.json").read_text())
  got = json.loads((multi / "results.json").read_text())
  assert got["final"]["metrics"] == pytest.approx(expected["final"]["metrics"], abs=1e-6)
  assert got["best"]["step"] == expected["best"]["step"]
  for (step_a, loss_a), (step_b, loss_b) in zip(_losses(single), _losses(multi), strict=True):
    assert step_a == step_b and loss_b == pytest.approx(loss_a, rel=2e-4)

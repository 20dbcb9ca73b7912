"""Two processes on localhost (JAX CPU collectives over gloo): the same run as one process, and
a preemption notice reaching one host stops both at the same step with one checkpoint."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

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


def _start_two(workdir, env, **run) -> list[subprocess.Popen]:
  port = _free_port()
  return [
    subprocess.Popen(
      train_command(
        workdir,
        **run,
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


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
  env = cache_env()
  single, multi = tmp_path / "single", tmp_path / "multi"
  subprocess.run(train_command(single, **RUN), env=env, check=True, capture_output=True)
  processes = _start_two(multi, env, **RUN)
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


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_one_step(tmp_path):
  workdir = tmp_path / "multi"
  run = {**RUN, "max_steps": -1, "num_epochs": 500, "eval_every_steps": 0}
  run["checkpoint_every_steps"] = 0
  processes = _start_two(workdir, cache_env(), **run)
  metrics = workdir / "metrics.jsonl"
  deadline = time.monotonic() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    exited = [process for process in processes if process.poll() is not None]
    assert not exited, "a process exited early:\n" + "\n".join(
      f"rc {process.returncode}: {process.communicate()[0][-3000:]}" for process in exited
    )
    assert time.monotonic() < deadline, "timed out waiting for training steps"
    time.sleep(0.2)
  processes[1].send_signal(signal.SIGTERM)  # Only the second host gets the notice.
  outputs = [process.communicate(timeout=300)[0] for process in processes]
  for process, output in zip(processes, outputs, strict=True):
    assert process.returncode == 0, output[-3000:]
  stops = [
    int(line.rsplit("Preempted at step", 1)[1].split(";")[0])
    for output in outputs
    for line in output.splitlines()
    if "Preempted at step" in line
  ]
  assert len(stops) == 2 and stops[0] == stops[1] >= 3, outputs[0][-2000:]
  saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert saved == [stops[0]]
  assert not (workdir / "results.json").exists()

"""What a benchmark prints about the machine it ran on: the CPU's name and the load."""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_name() -> str:
  """`lscpu`'s model name, or the platform's processor string."""
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or "unknown"


def load_average() -> str:
  """The 1, 5 and 15 minute load averages."""
  return " ".join(f"{x:.2f}" for x in os.getloadavg())

"""Benchmarks (scripts that print numbers; never timed tests)."""

import os
import platform

# The tfds data directory of the shared data folder next to the project.
SHARED_TFDS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "..", "shared", "data", "tfds")


def cpu_model():
  """The CPU's model name (from /proc/cpuinfo where there is one)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor()

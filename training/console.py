"""Messages of the training application to the user (stderr)."""

import sys


def warn(message):
  """Prints `warning: <message>` to stderr at once (not via `warnings`: the
  CLIs must always show it, and say what was skipped or lost)."""
  print(f"warning: {message}", file=sys.stderr, flush=True)

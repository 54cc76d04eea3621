"""Messages of the training application to the user (stderr)."""

import contextlib
import sys


def warn(message):
  """Prints `warning: <message>` to stderr at once (not via `warnings`: the
  CLIs must always show it, and say what was skipped or lost)."""
  print(f"warning: {message}", file=sys.stderr, flush=True)


def progress_on_stderr():
  """A context in which Keras progress bars (which write to stdout) go to
  stderr, so a CLI's stdout stays its machine-readable result."""
  return contextlib.redirect_stdout(sys.stderr)

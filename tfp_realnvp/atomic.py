"""Atomic file writes: nothing is half-written when a process dies."""

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=""):
  """Yields a temporary path next to `path`; renames it over `path` on
  success (`os.replace` is atomic on POSIX), removes it on failure.

  `suffix` keeps a file extension that a writer insists on (e.g. `.keras`).
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=suffix, prefix=".tmp-", dir=directory)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)

"""The one file hash and the one weights digest of the package.

- `sha256_file(path)`: hex SHA-256 of a file, streamed (checkpoint
  metadata, the pretrained catalogue, published files).
- `weights_sha256(variables)`: hex SHA-256 of the values of a list of
  variables or arrays, in order, each with its dtype and shape (so a float32
  and a float16 copy of the same numbers differ). Used for "do the replicas
  agree bit-wise" (`metrics.json`'s `final_weights_sha256`) and, as its
  first 8 bytes (`digest_words`), for "which weights does the typicality
  reference belong to" (`scores.ScoreStatistics`).

Depends on nothing else of the package.
"""

import hashlib

import numpy as np

_BLOCK = 1 << 20


def sha256_file(path):
  """Hex SHA-256 of the file at `path`, read in 1 MiB blocks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_BLOCK), b""):
      digest.update(block)
  return digest.hexdigest()


def weights_sha256(variables):
  """Hex SHA-256 of the variables' (or arrays') values, dtypes and shapes,
  in the order given."""
  digest = hashlib.sha256()
  for v in variables:
    value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
    digest.update(str((value.dtype.str, value.shape)).encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()


def digest_words(hex_digest):
  """The first 8 bytes of a hex digest as two int32 (what fits a small
  int32 variable, saved and exported with a model)."""
  return np.frombuffer(bytes.fromhex(hex_digest)[:8], dtype=np.int32).copy()

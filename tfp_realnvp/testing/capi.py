"""A local stand-in for `tensorflow_model_server` (test/bench harness).

Not part of the modelling API. `CApiSession` runs an export's signatures in
a subprocess (`capi_runner.py`, next to this file) that loads the SavedModel
through TensorFlow's C API with ctypes and imports no TensorFlow Python: it
is the same SavedModel loader (`LoadSavedModel`) the server runs, so what
works here loads and runs in TF Serving. No `tensorflow_model_server` binary
installs from PyPI or Debian; the tests and `bench` use this instead.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

# Started by file path, not with `python -m`: that would import the
# `tfp_realnvp` package and with it TensorFlow Python.
_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "capi_runner.py")


class ServingError(RuntimeError):
  """A request the session rejected; `code` is the TF/gRPC status code
  (3 = INVALID_ARGUMENT, the code TF Serving returns for it)."""

  def __init__(self, code, message):
    super().__init__(f"[{code}] {message}")
    self.code = code
    self.message = message


def signatures(export_dir, tags=("serve",)):
  """Signature name -> {"inputs": {key: (tensor, dtype)}, "outputs": {...}}
  read from `saved_model.pb`."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  saved = saved_model_pb2.SavedModel()
  with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    saved.ParseFromString(f.read())
  for meta in saved.meta_graphs:
    if set(tags) <= set(meta.meta_info_def.tags):
      break
  else:
    raise ValueError(f"no meta graph with tags {tags} in {export_dir}")
  result = {}
  for name, sig in meta.signature_def.items():
    if name.startswith("__"):
      continue
    result[name] = {
        "inputs": {k: (v.name, tf.dtypes.as_dtype(v.dtype).as_numpy_dtype)
                   for k, v in sig.inputs.items()},
        "outputs": {k: (v.name, tf.dtypes.as_dtype(v.dtype).as_numpy_dtype)
                    for k, v in sig.outputs.items()},
    }
  return result


def _tensorflow_dir():
  spec = importlib.util.find_spec("tensorflow")
  if spec is None or not spec.submodule_search_locations:
    raise RuntimeError("the tensorflow package is not installed")
  return list(spec.submodule_search_locations)[0]


class CApiSession:
  """Runs an export's signatures in a subprocess through TF's C API.

  The subprocess imports no TensorFlow Python: it is the same SavedModel
  loader (`LoadSavedModel`) that `tensorflow_model_server` runs, so what
  works here loads and runs in the server.
  """

  def __init__(self, export_dir, timeout=300):
    self.export_dir = os.path.abspath(export_dir)
    self.signatures = signatures(self.export_dir)
    self._tmp = tempfile.TemporaryDirectory(prefix="capi-")
    self._count = 0
    self._timeout = timeout
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    self._proc = subprocess.Popen(
        [sys.executable, _RUNNER, _tensorflow_dir(), self.export_dir],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env)
    hello = self._read()
    if not hello.get("ready"):
      self.close()
      raise RuntimeError(f"the C API could not load {export_dir}: "
                         f"{hello.get('message')}")
    self.load_seconds = hello["load_seconds"]
    self.tensorflow_python_imported = hello["tensorflow_python_imported"]

  def _read(self):
    line = self._proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the C-API runner exited (code "
                         f"{self._proc.poll()})")
    return json.loads(line)

  def run(self, signature, inputs, repeat=1, return_seconds=False):
    """Runs a signature on numpy `inputs`; returns its outputs by name."""
    if signature not in self.signatures:
      raise ValueError(f"unknown signature {signature!r}; the export has "
                       f"{sorted(self.signatures)}")
    sig = self.signatures[signature]
    missing = set(sig["inputs"]) - set(inputs)
    if missing:
      raise ValueError(f"signature {signature!r} needs inputs "
                       f"{sorted(sig['inputs'])}, missing {sorted(missing)}")
    self._count += 1
    feeds = {}
    for key, (tensor, _) in sig["inputs"].items():
      path = os.path.join(self._tmp.name, f"{self._count}-{key}.npy")
      np.save(path, np.asarray(inputs[key]))
      feeds[tensor] = path
    keys = sorted(sig["outputs"])
    fetches = [sig["outputs"][k][0] for k in keys]
    out = os.path.join(self._tmp.name, f"{self._count}-out.npz")
    self._proc.stdin.write(json.dumps({"feeds": feeds, "fetches": fetches,
                                       "out": out, "repeat": repeat}) + "\n")
    self._proc.stdin.flush()
    reply = self._read()
    if not reply["ok"]:
      raise ServingError(reply["code"], reply["message"])
    with np.load(out) as data:
      outputs = {k: data[f"out{i}"] for i, k in enumerate(keys)}
    os.remove(out)
    for path in feeds.values():
      os.remove(path)
    if return_seconds:
      return outputs, reply["seconds"]
    return outputs

  def close(self):
    if self._proc.poll() is None:
      self._proc.stdin.close()
      try:
        self._proc.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self._proc.kill()
    self._tmp.cleanup()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

"""Client helpers for a served `RealNVP`: TF Serving REST / gRPC payloads,
and a local stand-in for the server that runs an export through TF's C API.

```python
from tfp_realnvp import serving
body = serving.rest_request({"images": x}, signature="serving_default")
# POST json.dumps(body) to http://host:8501/v1/models/<name>:predict
request = serving.grpc_request("digits", "sample",
                               {"seed": seeds, "temperature": temps})
# stub.Predict(request) on a PredictionServiceStub (host:8500)
```
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "capi_runner.py")


# --- REST (JSON) -------------------------------------------------------------------


def _jsonable(value):
  return np.asarray(value).tolist()


def rest_request(inputs, signature="serving_default", row_format=True):
  """The JSON body of a TF Serving `:predict` REST call.

  Args:
    inputs: dict of input name -> array, all with the same first dimension.
    signature: the signature name.
    row_format: `instances` (one object per example, what `--enable_batching`
      splits) or else the columnar `inputs` form.
  """
  arrays = {k: np.asarray(v) for k, v in inputs.items()}
  rows = {len(v) for v in arrays.values()}
  if len(rows) != 1:
    raise ValueError(f"every input needs the same first dimension N, got "
                     f"{ {k: v.shape for k, v in arrays.items()} }")
  if not row_format:
    return {"signature_name": signature,
            "inputs": {k: _jsonable(v) for k, v in arrays.items()}}
  n = rows.pop()
  return {"signature_name": signature,
          "instances": [{k: _jsonable(v[i]) for k, v in arrays.items()}
                        for i in range(n)]}


def decode_rest_request(body, dtypes):
  """The input tensors a server decodes a REST body into (for checking).

  Args:
    body: the dict (or JSON string) from `rest_request`.
    dtypes: dict of input name -> numpy dtype of the signature.
  """
  if isinstance(body, str):
    body = json.loads(body)
  if "instances" in body:
    instances = body["instances"]
    return {k: np.asarray([inst[k] for inst in instances], dtype=dtypes[k])
            for k in dtypes}
  return {k: np.asarray(body["inputs"][k], dtype=dtypes[k]) for k in dtypes}


def rest_response(outputs, row_format=True):
  """The JSON body TF Serving answers with for these output tensors."""
  arrays = {k: np.asarray(v) for k, v in outputs.items()}
  if not row_format:
    if len(arrays) == 1:
      return {"outputs": _jsonable(next(iter(arrays.values())))}
    return {"outputs": {k: _jsonable(v) for k, v in arrays.items()}}
  n = len(next(iter(arrays.values())))
  if len(arrays) == 1:
    return {"predictions": _jsonable(next(iter(arrays.values())))}
  return {"predictions": [{k: _jsonable(v[i]) for k, v in arrays.items()}
                          for i in range(n)]}


def decode_rest_response(body):
  """Output name -> array from a row (`predictions`) or columnar response."""
  if isinstance(body, str):
    body = json.loads(body)
  if "predictions" in body:
    predictions = body["predictions"]
    if predictions and isinstance(predictions[0], dict):
      return {k: np.asarray([p[k] for p in predictions])
              for k in predictions[0]}
    return {"output": np.asarray(predictions)}
  outputs = body["outputs"]
  if isinstance(outputs, dict):
    return {k: np.asarray(v) for k, v in outputs.items()}
  return {"output": np.asarray(outputs)}


# --- gRPC ------------------------------------------------------------------------------


def grpc_request(model_name, signature, inputs, version=None):
  """A `tensorflow_serving.apis.predict_pb2.PredictRequest`."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = int(version)
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
  return request


def decode_grpc_request(request):
  """Input name -> array of a `PredictRequest` (what the server feeds)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {k: tf.make_ndarray(v) for k, v in request.inputs.items()}


# --- the C-API stand-in for tensorflow_model_server ------------------------------------


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
  from tensorflow.python.framework import dtypes  # pylint: disable=import-outside-toplevel
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
        "inputs": {k: (v.name, dtypes.as_dtype(v.dtype).as_numpy_dtype)
                   for k, v in sig.inputs.items()},
        "outputs": {k: (v.name, dtypes.as_dtype(v.dtype).as_numpy_dtype)
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

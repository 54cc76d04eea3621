"""Runs a SavedModel through TensorFlow's C API, as TF Serving loads it.

Part of the test/bench harness (`tfp_realnvp.testing`), not of the modelling
API. Started by `tfp_realnvp.testing.capi.CApiSession` as a separate process,
by file path (not `python -m`, which would import the `tfp_realnvp` package
and with it TensorFlow Python):

    python .../tfp_realnvp/testing/capi_runner.py TENSORFLOW_PACKAGE_DIR EXPORT_DIR

It imports no TensorFlow Python: it opens `libtensorflow_framework.so.2` and
`libtensorflow_cc.so.2` from the installed wheel with ctypes, loads the
export with `TF_LoadSessionFromSavedModel` (tag `serve`; the same
`LoadSavedModel` C++ loader `tensorflow_model_server` uses, which restores the
variables and runs the init ops), then answers JSON-line requests on stdin:

    {"feeds": {"op:0": "in0.npy", ...}, "fetches": ["op:0", ...],
     "out": "out.npz", "repeat": 1}

with one JSON line on stdout: `{"ok": true, "seconds": [...]}` (outputs in
`out`) or `{"ok": false, "code": <TF_Code>, "message": "..."}`. A failed
request does not end the session: the next one is served as usual.
"""

import ctypes
import json
import os
import sys
import time

import numpy as np

_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8,
           9: np.int64, 10: np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


class _Output(ctypes.Structure):
  _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


class CApi:
  """The few C API functions the loader needs."""

  def __init__(self, tf_dir):
    self._libs = [
        ctypes.CDLL(os.path.join(tf_dir, "libtensorflow_framework.so.2"),
                    mode=ctypes.RTLD_GLOBAL),
        ctypes.CDLL(os.path.join(tf_dir, "libtensorflow_cc.so.2"),
                    mode=ctypes.RTLD_GLOBAL),
    ]
    vp, i, i64, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, \
        ctypes.c_size_t
    self._def("TF_NewStatus", vp, [])
    self._def("TF_DeleteStatus", None, [vp])
    self._def("TF_GetCode", i, [vp])
    self._def("TF_Message", ctypes.c_char_p, [vp])
    self._def("TF_NewSessionOptions", vp, [])
    self._def("TF_NewGraph", vp, [])
    self._def("TF_LoadSessionFromSavedModel", vp,
              [vp, vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), i,
               vp, vp, vp])
    self._def("TF_GraphOperationByName", vp, [vp, ctypes.c_char_p])
    self._def("TF_AllocateTensor", vp, [i, ctypes.POINTER(i64), i, sz])
    self._def("TF_TensorData", vp, [vp])
    self._def("TF_TensorByteSize", sz, [vp])
    self._def("TF_NumDims", i, [vp])
    self._def("TF_Dim", i64, [vp, i])
    self._def("TF_TensorType", i, [vp])
    self._def("TF_DeleteTensor", None, [vp])
    self._def("TF_SessionRun", None,
              [vp, vp, ctypes.POINTER(_Output), ctypes.POINTER(vp), i,
               ctypes.POINTER(_Output), ctypes.POINTER(vp), i, vp, i, vp, vp])

  def _def(self, name, restype, argtypes):
    for lib in reversed(self._libs):
      try:
        fn = getattr(lib, name)
      except AttributeError:
        continue
      fn.restype, fn.argtypes = restype, argtypes
      setattr(self, name, fn)
      return
    raise OSError(f"{name} not found in the TensorFlow shared libraries")

  def check(self, status):
    code = self.TF_GetCode(status)
    if code != 0:
      raise RuntimeError(code, self.TF_Message(status).decode("utf-8",
                                                              "replace"))

  def to_tensor(self, array):
    array = np.ascontiguousarray(array)
    if array.dtype not in _CODES:
      raise TypeError(f"unsupported dtype {array.dtype}")
    dims = (ctypes.c_int64 * array.ndim)(*array.shape)
    tensor = self.TF_AllocateTensor(_CODES[array.dtype], dims, array.ndim,
                                    array.nbytes)
    ctypes.memmove(self.TF_TensorData(tensor), array.ctypes.data,
                   array.nbytes)
    return tensor

  def from_tensor(self, tensor):
    dtype = _DTYPES[self.TF_TensorType(tensor)]
    shape = [self.TF_Dim(tensor, d) for d in range(self.TF_NumDims(tensor))]
    size = self.TF_TensorByteSize(tensor)
    buf = (ctypes.c_char * size).from_address(self.TF_TensorData(tensor))
    return np.frombuffer(bytes(buf), dtype=dtype).reshape(shape)


class Session:
  """A loaded SavedModel session."""

  def __init__(self, api, export_dir, tags=("serve",)):
    self.api = api
    status = api.TF_NewStatus()
    self.graph = api.TF_NewGraph()
    tag_array = (ctypes.c_char_p * len(tags))(*[t.encode() for t in tags])
    self.session = api.TF_LoadSessionFromSavedModel(
        api.TF_NewSessionOptions(), None, export_dir.encode(), tag_array,
        len(tags), self.graph, None, status)
    try:
      api.check(status)
    finally:
      api.TF_DeleteStatus(status)

  def _output(self, name):
    op, _, index = name.partition(":")
    oper = self.api.TF_GraphOperationByName(self.graph, op.encode())
    if not oper:
      raise RuntimeError(5, f"no operation {op!r} in the graph")
    return _Output(oper, int(index or 0))

  def run(self, feeds, fetches):
    api = self.api
    inputs = (_Output * len(feeds))(*[self._output(k) for k in feeds])
    values = [api.to_tensor(v) for v in feeds.values()]
    in_values = (ctypes.c_void_p * len(values))(*values)
    outputs = (_Output * len(fetches))(*[self._output(k) for k in fetches])
    out_values = (ctypes.c_void_p * len(fetches))()
    status = api.TF_NewStatus()
    try:
      api.TF_SessionRun(self.session, None, inputs, in_values, len(values),
                        outputs, out_values, len(fetches), None, 0, None,
                        status)
      api.check(status)
      result = {}
      for name, tensor in zip(fetches, out_values):
        result[name] = api.from_tensor(tensor)
        api.TF_DeleteTensor(tensor)
      return result
    finally:
      api.TF_DeleteStatus(status)
      for t in values:
        api.TF_DeleteTensor(t)


def _reply(obj):
  sys.stdout.write(json.dumps(obj) + "\n")
  sys.stdout.flush()


def main(argv):
  tf_dir, export_dir = argv[1], argv[2]
  start = time.perf_counter()
  try:
    session = Session(CApi(tf_dir), export_dir)
  except (OSError, RuntimeError) as e:
    _reply({"ready": False, "message": str(e)})
    return 1
  _reply({"ready": True, "load_seconds": time.perf_counter() - start,
          "tensorflow_python_imported": "tensorflow" in sys.modules})
  for line in sys.stdin:
    if not line.strip():
      continue
    request = json.loads(line)
    feeds = {k: np.load(v) for k, v in request["feeds"].items()}
    seconds = []
    try:
      for _ in range(int(request.get("repeat", 1))):
        t0 = time.perf_counter()
        result = session.run(feeds, request["fetches"])
        seconds.append(time.perf_counter() - t0)
    except RuntimeError as e:
      code, message = e.args if len(e.args) == 2 else (2, str(e))
      _reply({"ok": False, "code": code, "message": message})
      continue
    np.savez(request["out"], **{f"out{i}": result[k]
                                for i, k in enumerate(request["fetches"])})
    _reply({"ok": True, "seconds": seconds})
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))

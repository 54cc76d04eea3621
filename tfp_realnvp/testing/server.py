"""The server side of the TF Serving payloads (test/bench harness).

Not part of the modelling API: what TF Serving does with the requests that
`tfp_realnvp.serving` builds (decodes a REST body or a gRPC `PredictRequest`
into the tensors it feeds) and the REST response it answers with. The tests
use it to check the client helpers round-trip and to replay warmup records
through `tfp_realnvp.testing.capi.CApiSession`.
"""

import json

import numpy as np


def _jsonable(value):
  return np.asarray(value).tolist()


# --- REST (JSON) -------------------------------------------------------------------


def decode_rest_request(body, dtypes):
  """The input tensors a server decodes a REST body into (for checking).

  Args:
    body: the dict (or JSON string) from
      `tfp_realnvp.serving.rest_request`.
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


# --- gRPC ------------------------------------------------------------------------------


def decode_grpc_request(request):
  """Input name -> array of a `PredictRequest` (what the server feeds)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return {k: tf.make_ndarray(v) for k, v in request.inputs.items()}

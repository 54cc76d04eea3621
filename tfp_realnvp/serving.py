"""Client helpers for a served `RealNVP`: build TF Serving REST / gRPC
requests and read REST responses.

```python
from tfp_realnvp import serving
body = serving.rest_request({"images": x}, signature="serving_default")
# POST json.dumps(body) to http://host:8501/v1/models/<name>:predict
outputs = serving.decode_rest_response(response_text)
request = serving.grpc_request("digits", "sample",
                               {"seed": seeds, "temperature": temps})
# stub.Predict(request) on a PredictionServiceStub (host:8500)
```

The local stand-in for the server that the tests and benchmarks use (the
C-API session and the server side of these payloads) is the harness in
`tfp_realnvp.testing`, not part of this module.
"""

import json

import numpy as np


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

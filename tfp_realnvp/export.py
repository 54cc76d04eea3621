"""Export a `RealNVP` as a versioned SavedModel for TF Serving.

```
saved_models/
  models.config                       ModelServerConfig text proto (all models)
  <name>/
    1/                                integer versions, as TF Serving expects
      saved_model.pb, variables/
      assets.extra/tf_serving_warmup_requests   PredictionLog TFRecord
    2/ ...
```

Signatures (tag `serve`; every input and output has one shared first
dimension N, so row-format REST requests and `--enable_batching` work;
images, latents and seeds are declared with open shapes and their shape is
checked in the graph; class-conditional models add `labels` int32 [N]):

| signature          | inputs                                   | outputs |
|--------------------|------------------------------------------|---------|
| `serving_default`  | `images` float32 [N,H,W,C] in [0, 256]   | `log_prob` [N] (nats), `bits_per_dim` [N] |
| `log_prob_uint8`   | `images` uint8 [N,H,W,C]                 | same; pixels are dequantized at the bin centre (+0.5) |
| `sample`           | `seed` int32 [N,2], `temperature` float32 [N] | `images` float32 [N,H,W,C], `images_uint8` |
| `encode`           | `images` float32 [N,H,W,C]               | `latent` float32 [N,D] |
| `decode`           | `latent` float32 [N,D]                   | `images` float32 [N,H,W,C], `images_uint8` |
| `score`            | `images` uint8 [N,H,W,C]                 | `bits_per_dim`, `png_bits_per_dim`, `complexity`, `typicality` [N] |

`log_prob` of `serving_default` is the density of the dequantized pixels the
caller sends (send `pixel + u`, `u ~ U[0,1)`, for the paper's bound);
`log_prob_uint8` evaluates the density at the centre of each pixel's bin,
a deterministic one-sample estimate of the discrete log-likelihood.

`score` gives the out-of-distribution scores of `tfp_realnvp.scores` (higher =
more unusual; `bits_per_dim` there is at the bin centres, as in
`log_prob_uint8`). A class-conditional model scores the image alone (the
class marginal), so `score` takes no labels. `typicality` is present only
when the model's typicality reference was computed with the exported weights
(`RealNVP.compute_score_statistics`, done by `fit`); otherwise the export
warns and the signature has the other three outputs.

Sampled and decoded `images` are clipped to [0, 256) (`RealNVP.clip_pixels`);
`images_uint8` is their floor.

`sample` is stateless: row i draws its latent from
`stateless_normal(seed[i])`, so the same seed row gives the same image
whatever else is in the batch. Inputs are checked in the graph by
`tfp_realnvp.validation`, the checks the model itself uses: a wrong rank or
shape, an empty batch, NaN/inf, values outside [0, 256], labels out of range
or not one per row, or a non-positive temperature fail with a message saying
what was expected (TF
Serving returns it as INVALID_ARGUMENT) and the next request is served as
usual. Exported functions contain no PyFunc, no XLA and no stateful random
ops (TF Serving's defaults reject or misbehave on them).
"""

import errno
import json
import os
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
from tfp_realnvp import scores
# The signatures and the functions behind them (public here since 0.1).
from tfp_realnvp.signatures import SIGNATURES
from tfp_realnvp.signatures import UNLABELLED  # noqa: F401
from tfp_realnvp.signatures import example_inputs
from tfp_realnvp.signatures import write_saved_model

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# What a client needs to know without TensorFlow Python (image shape,
# classes, the typicality reference); TF Serving ignores the file.
DESCRIPTION_FILE = os.path.join("assets.extra", "tfp_realnvp.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def describe(model):
  """The JSON-able description written to `DESCRIPTION_FILE`."""
  typicality = scores.reference_is_current(model)
  return {
      "image_shape": [int(d) for d in model.image_shape],
      "num_classes": model.num_classes,
      "event_size": int(model.event_size),
      "signatures": list(SIGNATURES),
      "score_outputs": scores.output_names(typicality),
      "score_statistics": (model.score_statistics.as_dict() if typicality
                           else None),
      "config": model.get_config(),
  }


def read_description(version_dir):
  """`describe()` of an export, from its `DESCRIPTION_FILE`."""
  path = os.path.join(version_dir, DESCRIPTION_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{version_dir} has no {DESCRIPTION_FILE}: it was not "
                     f"exported by this version of tfp_realnvp (export the "
                     f"checkpoint again with realnvp-export)")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _write_description(model, version_dir):
  path = os.path.join(version_dir, DESCRIPTION_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(describe(model), f, indent=2, sort_keys=True, default=str)
    f.write("\n")
  return path


def _write_warmup(model, version_dir, name, per_signature=2):
  from tensorflow_serving.apis import model_pb2  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=import-outside-toplevel
  path = os.path.join(version_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as writer:
    for signature in SIGNATURES:
      for i in range(per_signature):
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=name,
                                           signature_name=signature))
        for key, value in example_inputs(model, signature, n=1 + i,
                                         seed=i).items():
          request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
  return path


def _versions(model_dir):
  if not os.path.isdir(model_dir):
    return []
  return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit())


def write_models_config(base_dir, serving_root="/models"):
  """(Re)writes `base_dir/models.config` listing every exported model.

  `base_path` of each entry is `serving_root/<name>`: where the directory is
  mounted inside the server (the `tensorflow/serving` image uses /models).
  """
  from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=import-outside-toplevel
  from google.protobuf import text_format  # pylint: disable=import-outside-toplevel
  config = model_server_config_pb2.ModelServerConfig()
  for name in sorted(os.listdir(base_dir)):
    if _versions(os.path.join(base_dir, name)):
      entry = config.model_config_list.config.add()
      entry.name = name
      entry.base_path = f"{serving_root.rstrip('/')}/{name}"
      entry.model_platform = "tensorflow"
  path = os.path.join(base_dir, "models.config")
  with atomic.atomic_path(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text_format.MessageToString(config))
  return path


def export_for_serving(model, base_dir="saved_models", name=None,
                       version=None, serving_root="/models",
                       warmup_requests=2):
  """Exports `model` to `base_dir/name/version/` for TF Serving.

  The SavedModel and its warmup file are written into a temporary directory
  next to the target and renamed into place, so the server never sees a
  half-written version; an existing version is never overwritten.

  Args:
    model: a `tfp_realnvp.RealNVP`.
    base_dir: the model base directory (mounted as /models in the server).
    name: the model name (default: the Keras model's name).
    version: an integer version; `None` takes the next free one.
    serving_root: where `base_dir` is mounted for the server (for
      models.config).
    warmup_requests: requests per signature in the warmup file (0: none).

  Returns:
    The path of the new version directory.
  """
  name = name or model.name
  if not _NAME.match(name):
    raise ValueError(f"model name must be letters, digits, '_', '-' or '.', "
                     f"got {name!r}")
  model_dir = os.path.join(base_dir, name)
  os.makedirs(model_dir, exist_ok=True)
  if version is not None and (
      isinstance(version, bool) or not isinstance(version, (int, np.integer))
      or version < 1):
    raise ValueError(f"version must be a positive integer, got {version!r}")
  if version is not None:
    _refuse_existing(os.path.join(model_dir, str(int(version))))
  # Not all-digit, so TF Serving never mistakes it for a version.
  tmp = tempfile.mkdtemp(prefix=".tmp-export-", dir=model_dir)
  try:
    target = os.path.join(tmp, "model")
    write_saved_model(model, target)
    _write_description(model, target)
    if warmup_requests:
      _write_warmup(model, target, name, warmup_requests)
    final = _publish(target, model_dir, version)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  write_models_config(base_dir, serving_root)
  return final


def _refuse_existing(final):
  if os.path.exists(final):
    raise FileExistsError(f"{final} already exists; versions are never "
                          f"overwritten (pass version=None for the next one)")


def _publish(target, model_dir, version, attempts=100):
  """Renames the finished export to its version directory, atomically.

  With `version=None` the version is the next free one *at the rename*:
  when a concurrent export takes that number first (the rename then finds
  a non-empty directory), the next one is tried, so two exports started
  together both land, as versions N and N+1. An explicit version that
  appeared meanwhile is refused, never overwritten.
  """
  for _ in range(attempts):
    if version is None:
      existing = _versions(model_dir)
      final = os.path.join(model_dir, str(existing[-1] + 1 if existing else 1))
    else:
      final = os.path.join(model_dir, str(int(version)))
      _refuse_existing(final)
    try:
      os.rename(target, final)  # fails if `final` exists and is not empty
      return final
    except OSError as e:
      if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
        raise
      if version is not None:
        _refuse_existing(final)
        raise
  raise FileExistsError(f"could not find a free version in {model_dir} "
                        f"after {attempts} attempts (concurrent exports?)")

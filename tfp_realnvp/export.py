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
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
from tfp_realnvp import scores
from tfp_realnvp import validation

SIGNATURES = ("serving_default", "log_prob_uint8", "sample", "encode",
              "decode", "score")
# Signatures that take no labels even from a class-conditional model.
UNLABELLED = ("score",)
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# What a client needs to know without TensorFlow Python (image shape,
# classes, the typicality reference); TF Serving ignores the file.
DESCRIPTION_FILE = os.path.join("assets.extra", "tfp_realnvp.json")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class _Endpoints:
  """The Tensor-in / Tensor-out functions behind the signatures."""

  def __init__(self, model):
    self.model = model
    self.shape = tuple(model.image_shape)
    self.size = int(model.event_size)
    self.conditional = bool(model.num_classes)
    self.typicality = scores.reference_is_current(model)

  # --- checks: tfp_realnvp.validation, the model's own (graph asserts, ---
  # --- reported by the server as INVALID_ARGUMENT) --------------------------

  def _check_images(self, images):
    return validation.check_images(images, self.shape, allow_uint8=True)

  def _check_labels(self, labels, rows):
    return validation.check_labels(tf.reshape(labels, [-1]),
                                   self.model.num_classes, rows=rows)

  def _check_latent(self, latent):
    return validation.check_latents(latent, self.size)

  # --- endpoints ------------------------------------------------------------

  def _labels(self, labels, rows):
    return self._check_labels(labels, rows) if self.conditional else None

  def _log_prob(self, images, labels):
    labels = self._labels(labels, tf.shape(images)[0])
    lp = self.model.log_prob(images, labels=labels)
    return {"log_prob": lp,
            "bits_per_dim": self.model.to_bits_per_dim(lp)}

  def log_prob(self, images, labels=None):
    return self._log_prob(self._check_images(images), labels)

  def log_prob_uint8(self, images, labels=None):
    images = self._check_images(images)
    return self._log_prob(tf.cast(images, tf.float32) + 0.5, labels)

  def _images_out(self, images):
    return {"images": images,
            "images_uint8": tf.cast(
                tf.clip_by_value(tf.floor(images), 0.0, 255.0), tf.uint8)}

  def _decode(self, latent, labels):
    labels = self._labels(labels, tf.shape(latent)[0])
    return self.model.clip_pixels(self.model.decode(latent, labels))

  def sample(self, seed, temperature, labels=None):
    with tf.control_dependencies(validation.assert_shape(seed, [None, 2],
                                                         "seed")):
      seed = tf.ensure_shape(tf.identity(seed), (None, 2))
    rows = tf.shape(seed)[0]
    temperature = validation.check_temperature(temperature, rows=rows)
    size = self.size
    eps = tf.map_fn(lambda s: tf.random.stateless_normal([size], seed=s),
                    seed, fn_output_signature=tf.float32)
    latent = eps * temperature[:, None]
    return self._images_out(self._decode(latent, labels))

  def encode(self, images, labels=None):
    images = self._check_images(images)
    labels = self._labels(labels, tf.shape(images)[0])
    return {"latent": self.model.encode(images, labels)}

  def decode(self, latent, labels=None):
    return self._images_out(self._decode(self._check_latent(latent), labels))

  def score(self, images):
    levels = scores.to_levels(self._check_images(images))
    return scores.all_outputs(self.model, levels, self.typicality)


def _specs(model):
  # Shapes are left open in the signatures (unknown rank) and checked in the
  # graph, so a wrong shape gets a message naming the expected one. A
  # declared rank would be trusted by the graph optimizer (it folds
  # rank-dependent ops), and a request of another rank would then fail
  # inside a kernel instead of at the check.
  images = tf.TensorSpec(None, tf.float32, name="images")
  images_u8 = tf.TensorSpec(None, tf.uint8, name="images")
  labels = tf.TensorSpec([None], tf.int32, name="labels")
  specs = {
      "serving_default": ("log_prob", [images]),
      "log_prob_uint8": ("log_prob_uint8", [images_u8]),
      "sample": ("sample", [tf.TensorSpec(None, tf.int32, name="seed"),
                            tf.TensorSpec([None], tf.float32,
                                          name="temperature")]),
      "encode": ("encode", [images]),
      "decode": ("decode", [tf.TensorSpec(None, tf.float32,
                                          name="latent")]),
      "score": ("score", [images_u8]),
  }
  if model.num_classes:
    specs = {k: (fn, args + ([] if k in UNLABELLED else [labels]))
             for k, (fn, args) in specs.items()}
  return specs


def _bind(endpoints, method, conditional):
  fn = getattr(endpoints, method)
  if method in UNLABELLED:
    return lambda images: fn(images)
  if method == "sample":
    if conditional:
      return lambda seed, temperature, labels: fn(seed, temperature, labels)
    return lambda seed, temperature: fn(seed, temperature)
  arg = "latent" if method == "decode" else "images"
  if conditional:
    return {"images": lambda images, labels: fn(images, labels),
            "latent": lambda latent, labels: fn(latent, labels)}[arg]
  return {"images": lambda images: fn(images),
          "latent": lambda latent: fn(latent)}[arg]


def write_saved_model(model, path):
  """Writes the serving SavedModel of `model` to `path` (not atomic)."""
  endpoints = _Endpoints(model)
  if not endpoints.typicality:
    warnings.warn(
        "the export's score signature has no typicality output: the model's "
        "typicality reference is not set or was computed with other weights "
        "(call model.compute_score_statistics(training_data) before "
        "exporting)", stacklevel=2)
  archive = keras.export.ExportArchive()
  archive.track(model)
  for signature, (method, spec) in _specs(model).items():
    archive.add_endpoint(signature, _bind(endpoints, method,
                                          endpoints.conditional),
                         input_signature=spec)
  archive.write_out(path, verbose=False)


def example_inputs(model, signature, n=2, seed=0):
  """Small valid numpy inputs for a signature (warmup, tests, docs)."""
  rng = np.random.default_rng(seed)
  shape = (n,) + tuple(model.image_shape)
  if signature in ("serving_default", "encode"):
    inputs = {"images": (rng.integers(0, 256, shape) +
                         rng.random(shape)).astype(np.float32)}
  elif signature in ("log_prob_uint8", "score"):
    inputs = {"images": rng.integers(0, 256, shape).astype(np.uint8)}
  elif signature == "sample":
    inputs = {"seed": rng.integers(0, 2 ** 31 - 1, (n, 2)).astype(np.int32),
              "temperature": np.full([n], 0.7, np.float32)}
  elif signature == "decode":
    inputs = {"latent": rng.standard_normal(
        (n, model.event_size)).astype(np.float32)}
  else:
    raise ValueError(f"unknown signature {signature!r}; expected one of "
                     f"{SIGNATURES}")
  if model.num_classes and signature not in UNLABELLED:
    inputs["labels"] = rng.integers(0, model.num_classes, [n]).astype(
        np.int32)
  return inputs


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

"""Checks a TF Serving deployment of our exports before it is started.

`saved_models/docker-compose.yml` and `saved_models/batching.config` are the
shipped example: the pinned `tensorflow/serving` image, `saved_models/`
mounted as `/models`, `--model_config_file` (the `models.config` every
export rewrites), batching and warmup. `check_deployment` reads them the way
the server will and says what would fail: a model directory missing or
without a version, a batching file the server rejects, a server older than
the TensorFlow that wrote the exports, a signature whose inputs are not
batched along their first dimension, a missing warmup file.

```python
from tfp_realnvp import deployment
summary = deployment.check_deployment("saved_models")   # ValueError if not
```

The batching file is parsed with `BatchingParameters` as declared in TF
Serving's `session_bundle_config.proto` (the pip package
`tensorflow-serving-api` does not ship that message; `batching_parameters`
rebuilds it from its seven public fields).
"""

import os
import re

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2

MOUNT = "/models"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many

_BATCHING_CLASS = None


def _batching_class():
  """`tensorflow.serving.BatchingParameters` in a private descriptor pool."""
  global _BATCHING_CLASS
  if _BATCHING_CLASS is None:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfp_realnvp/batching_parameters.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    field = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind, type_name, label) in enumerate([
        ("max_batch_size", field.TYPE_MESSAGE, ".google.protobuf.Int64Value",
         field.LABEL_OPTIONAL),
        ("batch_timeout_micros", field.TYPE_MESSAGE,
         ".google.protobuf.Int64Value", field.LABEL_OPTIONAL),
        ("max_enqueued_batches", field.TYPE_MESSAGE,
         ".google.protobuf.Int64Value", field.LABEL_OPTIONAL),
        ("num_batch_threads", field.TYPE_MESSAGE,
         ".google.protobuf.Int64Value", field.LABEL_OPTIONAL),
        ("thread_pool_name", field.TYPE_MESSAGE,
         ".google.protobuf.StringValue", field.LABEL_OPTIONAL),
        ("allowed_batch_sizes", field.TYPE_INT64, None, field.LABEL_REPEATED),
        ("pad_variable_length_inputs", field.TYPE_BOOL, None,
         field.LABEL_OPTIONAL)], start=1):
      entry = message.field.add(name=name, number=number, type=kind,
                                label=label)
      if type_name:
        entry.type_name = type_name
    pool.Add(proto)
    _BATCHING_CLASS = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
  return _BATCHING_CLASS


def batching_parameters(text):
  """Parses a `--batching_parameters_file` and applies the server's rules
  (allowed sizes increasing, the last one equal to `max_batch_size`, at
  least one batch thread); a `ValueError` naming the problem."""
  params = _batching_class()()
  try:
    text_format.Parse(text, params)
  except text_format.ParseError as e:
    raise ValueError(f"not a BatchingParameters text proto: {e}") from None
  sizes = list(params.allowed_batch_sizes)
  if params.HasField("max_batch_size") and params.max_batch_size.value < 1:
    raise ValueError("max_batch_size must be >= 1")
  if params.HasField("num_batch_threads") and (
      params.num_batch_threads.value < 1):
    raise ValueError("num_batch_threads must be >= 1")
  if sizes:
    if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
      raise ValueError(f"allowed_batch_sizes must be positive and "
                       f"increasing, got {sizes}")
    if sizes[-1] != params.max_batch_size.value:
      raise ValueError(f"the last allowed_batch_sizes entry ({sizes[-1]}) "
                       f"must equal max_batch_size "
                       f"({params.max_batch_size.value})")
  return params


def _flags(command):
  flags = {}
  for item in command if isinstance(command, list) else str(command).split():
    match = re.fullmatch(r"--([A-Za-z0-9_]+)(?:=(.*))?", str(item).strip())
    if match:
      flags[match.group(1)] = match.group(2) if match.group(2) is not None \
          else "true"
  return flags


def _in_base(path, base_dir, what):
  if not path.startswith(MOUNT + "/"):
    raise ValueError(f"{what} {path!r} is not under the {MOUNT} mount")
  return os.path.join(base_dir, path[len(MOUNT) + 1:])


def _check_version(version_dir, warmup):
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=import-outside-toplevel
  pb = os.path.join(version_dir, "saved_model.pb")
  if not os.path.exists(pb):
    raise ValueError(f"{version_dir} has no saved_model.pb")
  saved = saved_model_pb2.SavedModel()
  with open(pb, "rb") as f:
    saved.ParseFromString(f.read())
  serve = [m for m in saved.meta_graphs if "serve" in m.meta_info_def.tags]
  if not serve:
    raise ValueError(f"{version_dir} has no 'serve' meta graph")
  for name, sig in serve[0].signature_def.items():
    for key, info in list(sig.inputs.items()) + list(sig.outputs.items()):
      shape = info.tensor_shape
      if not shape.unknown_rank and (not shape.dim or shape.dim[0].size != -1):
        raise ValueError(f"{version_dir}: signature {name!r} tensor {key!r} "
                         f"has no open first (batch) dimension; the server's "
                         f"batching needs one")
  if warmup:
    from tfp_realnvp import export  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    path = os.path.join(version_dir, export.WARMUP_FILE)
    if not os.path.exists(path):
      raise ValueError(f"{version_dir} has no warmup file {export.WARMUP_FILE} "
                       f"(--enable_model_warmup is on)")
    records = sum(1 for _ in tf.data.TFRecordDataset(path))
    if not 0 < records <= MAX_WARMUP_RECORDS:
      raise ValueError(f"{path}: {records} warmup records; the server reads "
                       f"1 to {MAX_WARMUP_RECORDS}")


def check_deployment(base_dir, compose_file=None, tensorflow_version=None):
  """Checks `compose_file` (default `base_dir/docker-compose.yml`) against
  the exports in `base_dir`; returns `{"image", "models": {name:
  [versions]}, "max_batch_size"}` or raises a `ValueError` saying what the
  server would reject. `tensorflow_version`: of the exports (default: the
  installed TensorFlow); the image's TF Serving must not be older."""
  import yaml  # pylint: disable=import-outside-toplevel
  from tensorflow_serving.config import model_server_config_pb2  # pylint: disable=import-outside-toplevel
  base_dir = os.path.abspath(base_dir)
  compose_file = compose_file or os.path.join(base_dir, "docker-compose.yml")
  with open(compose_file, encoding="utf-8") as f:
    compose = yaml.safe_load(f)
  services = [s for s in (compose or {}).get("services", {}).values()
              if str(s.get("image", "")).startswith("tensorflow/serving")]
  if len(services) != 1:
    raise ValueError(f"{compose_file}: expected one tensorflow/serving "
                     f"service, found {len(services)}")
  service = services[0]
  image = service["image"]
  tag = image.partition(":")[2]
  match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(-gpu)?", tag)
  if not match:
    raise ValueError(f"{compose_file}: the image {image!r} is not pinned to "
                     f"a release tag such as tensorflow/serving:2.21.0")
  if tensorflow_version is None:
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    tensorflow_version = tf.__version__
  ours = tuple(int(v) for v in tensorflow_version.split(".")[:2])
  if (int(match.group(1)), int(match.group(2))) < ours:
    raise ValueError(f"{image} is older than the TensorFlow "
                     f"{tensorflow_version} that writes the exports; it may "
                     f"not know their ops")
  mounts = [str(v).split(":") for v in service.get("volumes", [])]
  here = os.path.dirname(os.path.abspath(compose_file))
  if not any(len(m) >= 2 and m[1] == MOUNT and os.path.abspath(
      os.path.join(here, m[0])) == base_dir for m in mounts):
    raise ValueError(f"{compose_file}: {base_dir} is not mounted at {MOUNT}")
  flags = _flags(service.get("command", []))
  if "model_config_file" not in flags:
    raise ValueError(f"{compose_file}: no --model_config_file")
  config_path = _in_base(flags["model_config_file"], base_dir,
                         "--model_config_file")
  if not os.path.exists(config_path):
    raise ValueError(f"{config_path} does not exist (an export writes it)")
  config = model_server_config_pb2.ModelServerConfig()
  with open(config_path, encoding="utf-8") as f:
    text_format.Parse(f.read(), config)
  warmup = flags.get("enable_model_warmup", "true").lower() != "false"
  models = {}
  for entry in config.model_config_list.config:
    model_dir = _in_base(entry.base_path, base_dir,
                         f"model {entry.name!r} base_path")
    versions = sorted(int(d) for d in os.listdir(model_dir) if d.isdigit()) \
        if os.path.isdir(model_dir) else []
    if not versions:
      raise ValueError(f"model {entry.name!r}: no version under {model_dir}")
    if entry.model_platform != "tensorflow":
      raise ValueError(f"model {entry.name!r}: platform "
                       f"{entry.model_platform!r}, expected 'tensorflow'")
    for version in versions:
      _check_version(os.path.join(model_dir, str(version)), warmup)
    models[entry.name] = versions
  if not models:
    raise ValueError(f"{config_path} lists no model")
  max_batch = None
  if flags.get("enable_batching", "false").lower() == "true":
    if "batching_parameters_file" not in flags:
      raise ValueError(f"{compose_file}: --enable_batching without "
                       f"--batching_parameters_file")
    path = _in_base(flags["batching_parameters_file"], base_dir,
                    "--batching_parameters_file")
    with open(path, encoding="utf-8") as f:
      params = batching_parameters(f.read())
    max_batch = params.max_batch_size.value
  return {"image": image, "models": models, "max_batch_size": max_batch}

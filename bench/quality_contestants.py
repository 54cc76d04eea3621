"""The contestants of `bench.quality`, each trained in its own child
process (`python -m bench.quality --one SPEC`): `run_one` trains ours, a
normflows peer or TFP's Glow for a wall-clock budget and scores the test
split; `run_config` runs the training app itself on a config. The data is
MNIST (tfds) or the colour photo patches of `bench.photos` (`DATA`): the
peers get them as arrays, the training app as the PNG folder
`bench.photos.write_folder` made of the same arrays.

With a `Curve`, every contestant also keeps a copy of its weights every
`minutes` of training (and at its end); after training (outside the
budget) each copy is scored on the first `images` test images: bits/dim
against wall-clock minutes.
"""

import math
import os
import time

from bench import models
from bench.common import BATCH, PRESETS, WORKLOADS

SHAPE = WORKLOADS["mnist"]  # (28, 28, 1)
TARGET = PRESETS["small"]  # 0.5e6 parameters
DATA = ("mnist", "photos")


def data_shape(data):
  """The image shape of `data` (one of `DATA`)."""
  if data == "photos":
    from bench import photos  # pylint: disable=import-outside-toplevel
    return photos.SHAPE
  return SHAPE


def load_data(data, data_dir, photos_root=None):
  """`(training.data.Datasets, test images)` of `data` for the peers:
  tfds MNIST from `data_dir`, or the photo patches as arrays."""
  if data == "photos":
    from bench import photos  # pylint: disable=import-outside-toplevel
    arrays, _ = photos.prepare(photos_root)
    return photos.datasets(arrays, BATCH, seed=0), len(arrays["test"])
  from training import data as data_lib  # pylint: disable=import-outside-toplevel
  return data_lib.load("mnist", batch_size=BATCH, seed=0, data_dir=data_dir,
                       download=False), 10000


def config_data(data, photos_root=None):
  """The config overrides that make `realnvp-train` read `data`: none for
  MNIST (the config's own dataset), the photo folder for photos."""
  if data != "photos":
    return {}
  from bench import photos  # pylint: disable=import-outside-toplevel
  _, folder = photos.prepare(photos_root)
  return {"dataset": f"folder:{folder}", "image_size": list(photos.SHAPE)}


class Curve:
  """Weight copies every `minutes` of training, scored afterwards on the
  first `images` test images (module docstring). `minutes` 0: off."""

  def __init__(self, minutes=0.0, images=1000):
    self.every = 60.0 * minutes
    self.images = images
    self.snapshots = []  # (seconds since the start, steps, weights)
    self._start = self._next = None

  def start(self, now):
    self._start, self._next = now, self.every

  def maybe(self, now, steps, take):
    """After a step: a copy (`take()`) when the next mark has passed."""
    if not self.every or now - self._start < self._next:
      return
    self.snapshots.append((now - self._start, steps, take()))
    while self._next <= now - self._start:
      self._next += self.every

  def final(self, now, steps, take):
    """At the end of training: the last copy."""
    if self.every:
      self.snapshots.append((now - self._start, steps, take()))

  def score(self, restore, bits_per_dim, test):
    """`[{"minutes", "steps", "bits_per_dim", "images"}]`: each copy,
    `restore`d, scored by `bits_per_dim(subset)` → (mean, images) on the
    first `images` of `test` (the same evaluation noise as the test
    figure's)."""
    subset = test.unbatch().take(self.images).batch(BATCH)
    points = []
    for seconds, steps, weights in self.snapshots:
      restore(weights)
      value, images = bits_per_dim(subset)
      points.append({"minutes": seconds / 60.0, "steps": steps,
                     "bits_per_dim": value, "images": images})
    return points


def _mean_bits_per_dim(nll, dims):
  """`bits_per_dim(subset)` for `Curve.score` from `nll(x)` (−log p in
  nats per image), summed in float64."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  def bits_per_dim(subset):
    values = np.concatenate([np.asarray(nll(x)) for x in subset])
    return (float(np.mean(values, dtype=np.float64) / (dims * math.log(2.0))),
            int(len(values)))
  return bits_per_dim


def _keras_curve_callback(curve):
  """A Keras callback feeding `curve` from `fit` (clock from fit's start)."""
  import keras  # pylint: disable=import-outside-toplevel

  class CurveCallback(keras.callbacks.Callback):

    def on_train_begin(self, logs=None):
      self.steps = 0
      curve.start(time.perf_counter())

    def on_train_batch_end(self, batch, logs=None):
      self.steps += 1
      curve.maybe(time.perf_counter(), self.steps, self.model.get_weights)

    def on_train_end(self, logs=None):
      curve.final(time.perf_counter(), self.steps, self.model.get_weights)
  return CurveCallback()


def run_config(name, overrides, minutes, data_dir, iw_samples=None,
               keep_dir=None, data="mnist", photos_root=None, curve=None):
  """`realnvp-train --config name --max_train_minutes minutes` (+ overrides,
  + the dataset of `data`) in a fresh run directory (`keep_dir`, else a
  temporary one); the row of its metrics.json."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  from training import train  # pylint: disable=import-outside-toplevel
  config = configs.load(name)
  config.update(overrides)
  config.update(config_data(data, photos_root))
  config.update(max_train_minutes=minutes, export=False)
  if iw_samples is not None:
    config["test_iw_samples"] = iw_samples
  curve = curve or Curve()
  with tempfile.TemporaryDirectory() as tmp:
    metrics = train.run(config, output_dir=keep_dir or os.path.join(tmp, "run"),
                        data_dir=data_dir, download=data_dir is None,
                        verbose=0, callbacks=[_keras_curve_callback(curve)])
  key = next(k for k in metrics if k.startswith("test_") and
             k.endswith("bits_per_dim") and "importance" not in k)
  steps = metrics["train_steps"]
  row = {"impl": "realnvp-train", "config": name, "overrides": overrides,
         "data": data, "parameters": metrics["num_parameters"],
         "minutes": minutes, "train_seconds": metrics["train_seconds"],
         "steps": steps, "images_seen": steps * config["batch_size"],
         "test_images": metrics.get("test_images"),
         "bound": key[len("test_"):],
         "test_bits_per_dim": metrics[key],
         "iw_samples": metrics.get("test_iw_samples"),
         "iw_images": (metrics.get("test_iw_subset") or {}).get("images"),
         "test_iw_bits_per_dim": metrics.get(
             "test_importance_weighted_bits_per_dim"),
         "phase_seconds": metrics.get("phase_seconds"),
         "process_seconds": metrics.get("process_seconds"),
         "lr_schedule": metrics.get("lr_schedule"),
         "run_dir": keep_dir}
  if curve.snapshots:
    row["curve"] = _config_curve(curve, config, data_dir)
  return row


def _config_curve(curve, config, data_dir):
  """The curve of a `run_config` run: its weight copies loaded into the
  model its config builds, scored as its test figure is (`evaluate` on the
  run's own test pipeline: the single draw, or a dequantizer's bound)."""
  from training import builders  # pylint: disable=import-outside-toplevel
  pipelines = builders.load_datasets(config, data_dir,
                                     download=data_dir is None)
  model = builders.build_model(config, pipelines.image_shape,
                               pipelines.num_classes)
  model.compile()

  def bits_per_dim(subset):
    images = sum(int(_first(b).shape[0]) for b in subset)
    result = model.evaluate(subset, verbose=0, return_dict=True)
    return float(result[model.bits_per_dim_name]), images
  return curve.score(model.set_weights, bits_per_dim, pipelines.test)


def _first(batch):
  """The image tensor of a pipeline element (`x` or `((x, labels),)`)."""
  while isinstance(batch, (tuple, list)):
    batch = batch[0]
  return batch


def run_one(impl, minutes, data_dir, checkerboard="masked",
            mixed_precision=None, target=TARGET, learning_rate=1e-3,
            data="mnist", photos_root=None, curve=None):
  """Train `impl` (ours, a torch peer or TFP Glow) on `data` for `minutes`
  of wall time, then score the test split; the contestant's row."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  pipelines, _ = load_data(data, data_dir, photos_root)
  shape = data_shape(data)
  curve = curve or Curve()
  budget = 60.0 * minutes
  start = time.perf_counter()
  curve.start(start)
  dims = float(np.prod(shape))
  if impl == "ours":
    params, steps, nll, weights = _train_ours(
        pipelines, shape, start, budget, target, learning_rate, checkerboard,
        mixed_precision, curve)
  elif impl in ("nf_glow", "nf_realnvp"):
    params, steps, nll, weights = _train_torch_peer(
        impl, pipelines, shape, start, budget, target, learning_rate, curve)
  else:
    params, steps, nll, weights = _train_tfp_glow(pipelines, shape, start,
                                                  budget, target, curve)
  train_seconds = time.perf_counter() - start
  total, count, finite, non_finite = 0.0, 0, True, 0
  for x in pipelines.test:
    values = nll(x).numpy()
    finite = finite and bool(np.all(np.isfinite(values)))
    non_finite += int(np.sum(~np.isfinite(values)))
    total += float(np.sum(values))
    count += len(values)
  row = {"impl": impl, "checkerboard": checkerboard if impl == "ours" else
         None, "mixed_precision": mixed_precision if impl == "ours" else
         None, "data": data, "parameters": int(params), "minutes": minutes,
         "train_seconds": train_seconds, "steps": steps,
         "images_seen": steps * BATCH, "test_images": count,
         "learning_rate": learning_rate,
         "non_finite_test_log_probs": non_finite,
         "all_test_log_probs_finite": finite,
         "test_bits_per_dim": total / count / (dims * math.log(2.0))}
  if curve.snapshots:
    row["curve"] = curve.score(
        weights, _mean_bits_per_dim(lambda x: nll(x).numpy(), dims),
        pipelines.test)
  return row


def _train_ours(pipelines, shape, start, budget, target, learning_rate,
                checkerboard, mixed_precision, curve):
  """(parameters, steps, nll, set_weights): ours trained by `fit` until
  `budget` seconds after `start`; nll(x) is −log p(x) per image."""
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  config = {"checkerboard": checkerboard}
  if mixed_precision:
    config["mixed_precision"] = mixed_precision
  model, params, _ = models.ours(shape, target, **config)
  import tfp_realnvp  # pylint: disable=import-outside-toplevel
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(learning_rate))

  class Budget(keras.callbacks.Callback):
    steps = 0

    def on_train_batch_end(self, batch, logs=None):
      Budget.steps += 1
      now = time.perf_counter()
      curve.maybe(now, Budget.steps, self.model.get_weights)
      if now - start >= budget:
        self.model.stop_training = True

  model.fit(pipelines.train.repeat(), epochs=10 ** 6, steps_per_epoch=100,
            callbacks=[Budget()], verbose=0, score_statistics=False)
  curve.final(time.perf_counter(), Budget.steps, model.get_weights)
  return (params, Budget.steps, tf.function(lambda x: -model.log_prob(x)),
          model.set_weights)


def _train_until(pipelines, step, start, budget, curve, weights):
  """Runs `step(x)` on the training batches until `budget` seconds after
  `start`, marking the quality curve (`weights()` copies the weights);
  returns the steps taken."""
  steps = 0
  for x in pipelines.train.repeat():
    step(x)
    steps += 1
    now = time.perf_counter()
    curve.maybe(now, steps, weights)
    if now - start >= budget:
      break
  curve.final(time.perf_counter(), steps, weights)
  return steps


def _train_torch_peer(impl, pipelines, shape, start, budget, target,
                      learning_rate, curve):
  """(parameters, steps, nll, load weights) of a normflows peer
  (`bench.torch_peers`) fed the same batches as numpy."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  torch = torch_peers.configure_torch()
  flow, params, _ = torch_peers.build_flow(impl, shape, target)
  optimizer = torch.optim.Adam(flow.parameters(), lr=learning_rate)

  def model_space(x):
    return torch_peers.to_model_space(torch, x.numpy())

  def weights():
    return {k: v.detach().clone() for k, v in flow.state_dict().items()}

  def step(x):
    optimizer.zero_grad(set_to_none=True)
    torch.mean(torch_peers.pixel_nll(flow, model_space(x), shape)).backward()
    optimizer.step()

  steps = _train_until(pipelines, step, start, budget, curve, weights)

  def nll(x):
    with torch.no_grad():
      return tf.constant(torch_peers.pixel_nll(flow, model_space(x),
                                               shape).numpy())
  return params, steps, nll, flow.load_state_dict


def _train_tfp_glow(pipelines, shape, start, budget, target, curve):
  """(parameters, steps, nll, set weights) of TFP's Glow
  (`bench.models.glow`)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  dist, _, params, _ = models.glow(shape, target)
  step = models.glow_train_step(dist, shape)

  def weights():
    return [v.numpy() for v in dist.variables]

  def restore(values):
    for v, value in zip(dist.variables, values):
      v.assign(value)

  steps = _train_until(pipelines, step, start, budget, curve, weights)
  nll = tf.function(
      lambda x: -models.glow_log_prob_pixels(dist, x, shape))
  return params, steps, nll, restore

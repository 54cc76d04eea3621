"""The contestants of `bench.quality`, each trained in its own child
process (`python -m bench.quality --one SPEC`): `run_one` trains ours, a
normflows peer or TFP's Glow for a wall-clock budget and scores the MNIST
test split; `run_config` runs the training app itself on a config.
"""

import math
import os
import time

from bench import models
from bench.common import BATCH, PRESETS, WORKLOADS

SHAPE = WORKLOADS["mnist"]  # (28, 28, 1)
TARGET = PRESETS["small"]  # 0.5e6 parameters


def run_config(name, overrides, minutes, data_dir, iw_samples=None,
               keep_dir=None):
  """`realnvp-train --config name --max_train_minutes minutes` (+ overrides)
  in a fresh run directory (`keep_dir`, else a temporary one); the row of
  its metrics.json."""
  import tempfile  # pylint: disable=import-outside-toplevel
  from training import configs  # pylint: disable=import-outside-toplevel
  from training import train  # pylint: disable=import-outside-toplevel
  config = configs.load(name)
  config.update(overrides)
  config.update(max_train_minutes=minutes, export=False)
  if iw_samples is not None:
    config["test_iw_samples"] = iw_samples
  with tempfile.TemporaryDirectory() as tmp:
    metrics = train.run(config, output_dir=keep_dir or os.path.join(tmp, "run"),
                        data_dir=data_dir, download=data_dir is None,
                        verbose=0)
  key = next(k for k in metrics if k.startswith("test_") and
             k.endswith("bits_per_dim") and "importance" not in k)
  steps = metrics["train_steps"]
  return {"impl": "realnvp-train", "config": name, "overrides": overrides,
          "parameters": metrics["num_parameters"], "minutes": minutes,
          "train_seconds": metrics["train_seconds"], "steps": steps,
          "images_seen": steps * config["batch_size"],
          "test_images": None if config["test_steps"] else 10000,
          "bound": key[len("test_"):],
          "test_bits_per_dim": metrics[key],
          "iw_samples": metrics.get("test_iw_samples"),
          "test_iw_bits_per_dim": metrics.get(
              "test_importance_weighted_bits_per_dim"),
          "run_dir": keep_dir}


def run_one(impl, minutes, data_dir, checkerboard="masked",
            mixed_precision=None, target=TARGET, learning_rate=1e-3):
  """Train `impl` (ours, a torch peer or TFP Glow) on MNIST for `minutes`
  of wall time, then score the test split; the contestant's row."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import numpy as np  # pylint: disable=import-outside-toplevel
  from training import data  # pylint: disable=import-outside-toplevel
  pipelines = data.load("mnist", batch_size=BATCH, seed=0,
                        data_dir=data_dir, download=False)
  budget = 60.0 * minutes
  start = time.perf_counter()
  dims = float(np.prod(SHAPE))
  if impl == "ours":
    params, steps, nll = _train_ours(pipelines, start, budget, target,
                                     learning_rate, checkerboard,
                                     mixed_precision)
  elif impl in ("nf_glow", "nf_realnvp"):
    params, steps, nll = _train_torch_peer(impl, pipelines, start, budget,
                                           target, learning_rate)
  else:
    params, steps, nll = _train_tfp_glow(pipelines, start, budget, target)
  train_seconds = time.perf_counter() - start
  total, count, finite, non_finite = 0.0, 0, True, 0
  for x in pipelines.test:
    values = nll(x).numpy()
    finite = finite and bool(np.all(np.isfinite(values)))
    non_finite += int(np.sum(~np.isfinite(values)))
    total += float(np.sum(values))
    count += len(values)
  return {"impl": impl, "checkerboard": checkerboard if impl == "ours" else
          None, "mixed_precision": mixed_precision if impl == "ours" else
          None, "parameters": int(params), "minutes": minutes,
          "train_seconds": train_seconds, "steps": steps,
          "images_seen": steps * BATCH, "test_images": count,
          "learning_rate": learning_rate,
          "non_finite_test_log_probs": non_finite,
          "all_test_log_probs_finite": finite,
          "test_bits_per_dim": total / count / (dims * math.log(2.0))}


def _train_ours(pipelines, start, budget, target, learning_rate,
                checkerboard, mixed_precision):
  """(parameters, steps, nll): ours trained by `fit` until `budget`
  seconds after `start`; nll(x) is −log p(x) per image."""
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  config = {"checkerboard": checkerboard}
  if mixed_precision:
    config["mixed_precision"] = mixed_precision
  model, params, _ = models.ours(SHAPE, target, **config)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate))

  class Budget(keras.callbacks.Callback):
    steps = 0

    def on_train_batch_end(self, batch, logs=None):
      Budget.steps += 1
      if time.perf_counter() - start >= budget:
        self.model.stop_training = True

  model.fit(pipelines.train.repeat(), epochs=10 ** 6, steps_per_epoch=100,
            callbacks=[Budget()], verbose=0, score_statistics=False)
  return params, Budget.steps, tf.function(lambda x: -model.log_prob(x))


def _train_torch_peer(impl, pipelines, start, budget, target, learning_rate):
  """(parameters, steps, nll) of a normflows peer (`bench.torch_peers`)
  fed the same batches as numpy."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bench import torch_peers  # pylint: disable=import-outside-toplevel
  torch = torch_peers.configure_torch()
  flow, params, _ = torch_peers.build_flow(impl, SHAPE, target)
  optimizer = torch.optim.Adam(flow.parameters(), lr=learning_rate)

  def model_space(x):
    return torch_peers.to_model_space(torch, x.numpy())

  steps = 0
  for x in pipelines.train.repeat():
    optimizer.zero_grad(set_to_none=True)
    torch.mean(torch_peers.pixel_nll(flow, model_space(x), SHAPE)).backward()
    optimizer.step()
    steps += 1
    if time.perf_counter() - start >= budget:
      break

  def nll(x):
    with torch.no_grad():
      return tf.constant(torch_peers.pixel_nll(flow, model_space(x),
                                               SHAPE).numpy())
  return params, steps, nll


def _train_tfp_glow(pipelines, start, budget, target):
  """(parameters, steps, nll) of TFP's Glow (`bench.models.glow`)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  dist, _, params, _ = models.glow(SHAPE, target)
  step = models.glow_train_step(dist, SHAPE)

  steps = 0
  for x in pipelines.train.repeat():
    step(x)
    steps += 1
    if time.perf_counter() - start >= budget:
      break
  nll = tf.function(
      lambda x: -models.glow_log_prob_pixels(dist, x, SHAPE))
  return params, steps, nll

"""Run as a script (it must configure devices before TF starts): one SGD step
on the same global batch with the default strategy and with MirroredStrategy
over two logical CPUs; prints the losses and the largest weight difference."""

import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import tfp_realnvp  # noqa: E402


def build():
  keras.utils.set_random_seed(0)
  return tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_res_blocks=1,
                             num_filters=8, use_batch_norm=False)


x = np.random.default_rng(0).uniform(0, 256, (16, 8, 8, 1)).astype(
    "float32")
single = build()
start = [v.numpy() for v in single.weights]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  mirrored = build()
  mirrored.compile(keras.optimizers.SGD(1e-3))
for v, w in zip(mirrored.weights, start):
  v.assign(w)
single.compile(keras.optimizers.SGD(1e-3))
losses = []
for model in (single, mirrored):
  history = model.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
  losses.append(history.history["loss"][0])
updates = [np.abs((a.numpy() - w) - (b.numpy() - w)).max() /
           max(np.abs(a.numpy() - w).max(), 1e-12)
           for a, b, w in zip(single.weights, mirrored.weights, start)]
json.dump({"replicas": strategy.num_replicas_in_sync, "losses": losses,
           "max_relative_update_difference": float(max(updates))},
          sys.stdout)

"""Run as a script (it must configure devices before TF starts): for each
case, one SGD step on the same global batch with the default strategy and
with MirroredStrategy over two logical CPUs; prints one JSON line mapping
each case to its losses and the largest relative differences of the weight
updates and of the batch-norm moving statistics.

    python tests/mirrored_check.py MODE[:CHECKERBOARD] [MODE[:CHECKERBOARD] ...]

MODE `none`: no batch norm; `synchronized` / `per_replica`: batch norm on,
with `synchronized_batch_norm` True / False; `synchronized` also keeps EMA
weights (updated in cross-replica context) and uses the running-average
batch norm (`bn_lag`), which must match the single device too; `glow`:
actnorm (its data-dependent initialisation runs in fit), 1x1 convolutions
and the split prior, no batch norm. CHECKERBOARD: masked (default) or
squeezed. One process serves every case (TF starts once)."""

import json
import sys

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import tfp_realnvp  # noqa: E402


def build(mode, checkerboard):
  keras.utils.set_random_seed(0)
  if mode == "glow":  # actnorm (initialised in fit), 1x1 conv, split prior
    return tfp_realnvp.RealNVP((8, 8, 1), num_scales=2, num_res_blocks=1,
                               num_filters=8, use_batch_norm=False,
                               actnorm=True, permutation="conv1x1",
                               prior="split", checkerboard=checkerboard)
  # One scale: its couplings and batch norms are what is compared.
  return tfp_realnvp.RealNVP((8, 8, 1), num_scales=1, num_res_blocks=1,
                             num_filters=8, use_batch_norm=mode != "none",
                             synchronized_batch_norm=mode == "synchronized",
                             checkerboard=checkerboard,
                             ema_decay=0.5 if mode == "synchronized" else None,
                             bn_lag=0.5 if mode == "synchronized" else 0.0)


x = np.random.default_rng(0).uniform(0, 256, (16, 8, 8, 1)).astype(
    "float32")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def relative_update_difference(pairs):
  """‖Δ_single − Δ_mirrored‖ / ‖Δ_single‖ over all the given variables (the
  update vector; for SGD it is −lr·gradient)."""
  if not pairs:
    return 0.0
  single = np.concatenate([(a.numpy() - w).ravel() for a, _, w in pairs])
  mirrored = np.concatenate([(b.numpy() - w).ravel() for _, b, w in pairs])
  return float(np.linalg.norm(single - mirrored) /
               max(np.linalg.norm(single), 1e-30))



def check(mode, checkerboard):
  single = build(mode, checkerboard)
  start = [v.numpy() for v in single.weights]
  with strategy.scope():
    mirrored = build(mode, checkerboard)
    mirrored.compile(keras.optimizers.SGD(1e-3))
  for v, w in zip(mirrored.weights, start):
    v.assign(w)
  single.compile(keras.optimizers.SGD(1e-3))
  losses = []
  for model in (single, mirrored):
    history = model.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0,
                        score_statistics=False)
    losses.append(history.history["loss"][0])
  pairs = list(zip(single.weights, mirrored.weights, start))
  return {"replicas": strategy.num_replicas_in_sync, "losses": losses,
          "ema_weights": sum("ema_" in p[0].path for p in pairs),
          "actnorm_initialized": [float(b.numpy()) for _, b, _ in pairs
                                  if "initialized" in b.path],
          "relative_actnorm_difference": relative_update_difference(
              [p for p in pairs if "actnorm" in p[0].path and
               p[0].trainable]),
          "relative_update_difference": relative_update_difference(
              [p for p in pairs if p[0].trainable]),
          "relative_moving_stat_difference": relative_update_difference(
              [p for p in pairs if "moving" in p[0].path])}


results = {}
for case in sys.argv[1:] or ["none"]:
  mode, _, checkerboard = case.partition(":")
  results[case] = check(mode, checkerboard or "masked")
json.dump(results, sys.stdout)

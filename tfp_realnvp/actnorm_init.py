"""Glow's data-dependent actnorm initialisation for a `RealNVP`.

`RealNVP.fit` calls `initialize(model, first_batch(x))` before training
when an actnorm is not initialised yet; `model.initialize_actnorm(batch)`
is the same call for users who train otherwise. Under a multi-replica
strategy every replica (and worker) ends with the same values
(`agree_across_replicas`).
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp.bijectors import actnorm as actnorm_lib


def first_batch(x, batch_size=None):
  """The first batch `fit` will see of `x`: a `tf.data.Dataset`'s first
  element's inputs, or the first `batch_size` (Keras' default 32) rows of
  arrays."""
  if isinstance(x, tf.data.Dataset):
    element = next(iter(x))
    inputs, _, _ = keras.utils.unpack_x_y_sample_weight(element)
    return inputs
  if isinstance(x, (np.ndarray, tf.Tensor)):
    return x[:batch_size or 32]
  if isinstance(x, (tuple, list)) and x and all(
      isinstance(part, (np.ndarray, tf.Tensor)) for part in x):
    return tuple(part[:batch_size or 32] for part in x)
  raise ValueError(
      f"actnorm needs its data-dependent initialisation before training, "
      f"and fit() cannot take a first batch from {type(x).__name__}: call "
      f"model.initialize_actnorm(batch) with one batch (what call() takes) "
      f"before fit()")


def before_fit(model, x, batch_size=None):
  """What `RealNVP.fit` does first: initialises pending actnorms from the
  first batch of `x`."""
  if pending(model):
    initialize(model, first_batch(x, batch_size))


def pending(model):
  """True when `model` has actnorms that are not initialised yet."""
  return model.actnorm and not all(
      state.is_initialized() for state in model.actnorm_states)


def initialize(model, inputs):
  """One eager training-mode pass of `model` on `inputs` (what `call`
  takes) with every uninitialised actnorm in data-init mode; the moving
  statistics the pass updated are restored; replicas agree; the EMA copy,
  if any, takes the initialised values."""
  if not model.actnorm:
    raise ValueError("initialize_actnorm: this model has no actnorm "
                     "(actnorm=False)")
  if not tf.executing_eagerly():
    raise RuntimeError("initialize_actnorm runs eagerly, not in a "
                       "tf.function")
  actnorm_vars = {id(v) for s in model.actnorm_states for v in s.weights}
  kept = [(v, v.numpy()) for v in model.weights
          if not v.trainable and id(v) not in actnorm_vars]
  with actnorm_lib.data_init():
    model(inputs, training=True)
  for v, value in kept:
    v.assign(value)
  agree_across_replicas(model.distribute_strategy,
                        [v for s in model.actnorm_states for v in s.weights])
  if model.ema_decay is not None:
    for raw, ema in zip(model.actnorm_states, model.ema_actnorm_states):
      for a, b in zip(raw.weights, ema.weights):
        b.assign(a)


def agree_across_replicas(strategy, variables):
  """Under a multi-replica `strategy`: every replica (and worker, each of
  which initialised from its own first batch) takes the mean of the
  values, so the copies stay identical. No-op on one replica."""
  if strategy.num_replicas_in_sync <= 1:
    return

  def mean_of_replicas():
    ctx = tf.distribute.get_replica_context()
    return [ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v))
            for v in variables]

  with strategy.scope():
    means = strategy.run(mean_of_replicas)
    for v, mean in zip(variables, means):
      v.assign(strategy.experimental_local_results(mean)[0])

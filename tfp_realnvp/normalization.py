"""Batch statistics, per replica or synchronized, and a fast batch-norm layer.

Real NVP normalizes in two places (Dinh et al., 2017, §3.7 and §4.1): the
batch-norm *bijector* after every coupling (its log-det, eq. 18, uses the
batch variance) and ordinary batch norm inside the s/t ResNets. Both get their
statistics from `moments` here.

Under `tf.distribute` with several replicas the statistics are, by default,
**synchronized**: every replica all-reduces its per-channel sum, sum of
squares and count, so the batch mean/variance are those of the *global*
batch. Why: the flow's batch-norm log-det and the normalization depend on the
batch statistics, so per-replica statistics would make the training
objective (and the moving averages used at test time and for sampling)
depend on how many replicas split the batch; with synchronization 1 GPU or
8 GPUs optimize the same function of the same global batch (tested against a
single device). The price is a few tiny all-reduces per layer per step.
`synchronized=False` gives per-replica statistics (Keras' default for its own
`BatchNormalization`).

```
 one replica (or synchronized=False):   mean, var = moments(x_local)
 N replicas, synchronized:              Σx, Σx², n  ──all-reduce(SUM)──▶
                                        mean = Σx/n, var = Σx²/n − mean²
```

`BatchNorm` is the layer the s/t networks use. With one replica in training
(and always in inference) it runs the fused kernel (`FusedBatchNormV3`:
one op forward, one op backward, cuDNN/oneDNN implementations) instead of
`keras.layers.BatchNormalization`'s moments + element-wise arithmetic
(about 20 ops forward and backward per layer). The synchronized path uses
`moments` with all-reduce.
"""

import keras
import tensorflow as tf


def _replica_context_to_sync(synchronized):
  """The replica context to all-reduce in, or None for local statistics."""
  if not synchronized:
    return None
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync <= 1:
    return None
  return ctx


def syncs_across_replicas(synchronized=True):
  """True where `moments(..., synchronized)` would all-reduce right now."""
  return _replica_context_to_sync(synchronized) is not None


def moments(x, axes, synchronized=True):
  """Per-channel float32 mean and (biased) variance of `x` over `axes`.

  Computed in float32 whatever `x.dtype` is (statistics of float16/bfloat16
  activations lose too much precision). With `synchronized=True` and several
  replicas in sync, the statistics are those of all replicas' batches
  together.
  """
  x = tf.cast(x, tf.float32)
  ctx = _replica_context_to_sync(synchronized)
  if ctx is None:
    return tf.nn.moments(x, axes=axes)
  count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
  local = [tf.reduce_sum(x, axis=axes), tf.reduce_sum(tf.square(x), axis=axes),
           count]
  total, total_sq, total_count = ctx.all_reduce(tf.distribute.ReduceOp.SUM,
                                                local)
  mean = total / total_count
  variance = tf.maximum(total_sq / total_count - tf.square(mean), 0.0)
  return mean, variance


def fused_biased_variance(variance, x):
  """`(biased variance, values per channel)` from the Bessel-corrected
  variance `FusedBatchNormV3` returns in training for the `[N, H, W, C]`
  batch `x` it normalized."""
  height, width = x.shape[1], x.shape[2]
  if height and width:  # static: one slice of the shape, not three
    n = tf.cast(tf.shape(x)[0], tf.float32) * float(height * width)
  else:
    shape = tf.shape(x)
    n = tf.cast(shape[0] * shape[1] * shape[2], tf.float32)
  return variance * tf.math.divide_no_nan(n - 1.0, n), n


def validate_momentum_epsilon(momentum, epsilon):
  """Raises ValueError unless `0 <= momentum < 1` and `epsilon > 0`."""
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"momentum must be in [0, 1), got {momentum}")
  if epsilon <= 0.0:
    raise ValueError(f"epsilon must be > 0, got {epsilon}")


def update_moving(variable, value, momentum):
  """`variable ← momentum·variable + (1 − momentum)·value`."""
  variable.assign(momentum * variable + (1.0 - momentum) * value)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class BatchNorm(keras.layers.Layer):
  """Keras layer: batch norm of the s/t ResNets' hidden features (fused kernel).

  Not a bijector and no log-det; the flow's own batch-norm step is the
  bijector `tfp_realnvp.bijectors.FlowBatchNorm` (variables in a
  `BatchNormState`). The class name is part of the `.keras` weight paths
  (Keras names list items by class), so it is kept for old checkpoints.

  Normalizes over the last axis of `[N, H, W, C]` features.

  Same contract as `keras.layers.BatchNormalization(axis=-1)` (learned
  `gamma`, `beta`; moving averages `m ← momentum·m + (1−momentum)·batch`,
  used when `training=False`), but it runs the fused kernel and can
  synchronize statistics across replicas.

  Args:
    momentum: decay of the moving averages.
    epsilon: added to the variance.
    synchronized: all-reduce the batch statistics across replicas under a
      multi-replica `tf.distribute` strategy (see module docstring).
  """

  def __init__(self, momentum=0.9, epsilon=1e-4, synchronized=True, **kwargs):
    super().__init__(**kwargs)
    validate_momentum_epsilon(momentum, epsilon)
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    self.synchronized = bool(synchronized)

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"BatchNorm expects [N, H, W, C] inputs, got shape "
                       f"{tuple(input_shape)}")
    channels = int(input_shape[-1])
    self.gamma = self.add_weight(name="gamma", shape=(channels,),
                                 initializer="ones", autocast=False)
    self.beta = self.add_weight(name="beta", shape=(channels,),
                                initializer="zeros", autocast=False)
    # aggregation="mean": under a strategy each replica assigns the same
    # (synchronized) or its own value; the mirrored copies get the mean.
    self.moving_mean = self.add_weight(
        name="moving_mean", shape=(channels,), initializer="zeros",
        trainable=False, autocast=False, aggregation="mean")
    self.moving_variance = self.add_weight(
        name="moving_variance", shape=(channels,), initializer="ones",
        trainable=False, autocast=False, aggregation="mean")

  def call(self, x, training=False):
    gamma = tf.convert_to_tensor(self.gamma)
    beta = tf.convert_to_tensor(self.beta)
    if not training:
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(
          x, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
          variance=tf.convert_to_tensor(self.moving_variance),
          epsilon=self.epsilon, is_training=False)
      return y
    if syncs_across_replicas(self.synchronized):
      mean, variance = moments(x, axes=[0, 1, 2], synchronized=True)
      scale = gamma * tf.math.rsqrt(variance + self.epsilon)
      y = (tf.cast(x, tf.float32) - mean) * scale + beta
      y = tf.cast(y, x.dtype)
    else:
      y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          x, gamma, beta, epsilon=self.epsilon, is_training=True)
      # Keep the biased variance (what normalizes) so both paths average
      # the same thing.
      variance, _ = fused_biased_variance(variance, x)
    update_moving(self.moving_mean, mean, self.momentum)
    update_moving(self.moving_variance, variance, self.momentum)
    return y

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, epsilon=self.epsilon,
                  synchronized=self.synchronized)
    return config

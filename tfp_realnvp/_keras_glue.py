"""The loss and step plumbing between `RealNVP` and `keras.Model.fit`."""

import keras
import tensorflow as tf

from tfp_realnvp import optimizers
from tfp_realnvp import validation


def nll_loss(log_prob, sample_weight, penalties):
  """Mean negative log-likelihood in nats per image, plus the penalties.

  Under `tf.distribute` each replica returns its share of the global mean
  (Keras sums replica gradients and multiplies the reported loss back).
  """
  nll = -log_prob
  if sample_weight is not None:
    weights = tf.cast(tf.reshape(sample_weight, [-1]), nll.dtype)
    loss = tf.math.divide_no_nan(tf.reduce_sum(nll * weights),
                                 tf.reduce_sum(weights))
  else:
    loss = tf.reduce_mean(nll)
  # One AddN of the scalar penalties (a regularizer's loss is a scalar; a
  # reduction of each, as Keras writes it, added ~8 graph ops per weight
  # to the train step with its gradient).
  penalties = [tf.cast(p, loss.dtype) for p in penalties]
  penalties = [p if p.shape.rank == 0 else tf.reduce_sum(p)
               for p in penalties]
  if penalties:
    loss = loss + tf.add_n(penalties)
  replicas = tf.distribute.get_strategy().num_replicas_in_sync
  if replicas > 1:
    loss = loss * (1.0 / replicas)
  return loss


def reducible_logs(logs):
  """Step logs Keras 3 can reduce under MultiWorkerMirroredStrategy.

  Keras 3 reduces each replica's step outputs there with
  `strategy.reduce(MEAN, value, axis=0)`, which fails for the scalar
  loss/metric values every model returns ("Invalid reduction dimension 0
  for input with 0 dimensions", tensorflow/tensorflow#72388). As `[1]`
  tensors they reduce to the mean over replicas, a scalar, which is what
  Keras means to report. Other strategies get the scalars unchanged.
  """
  strategy = tf.distribute.get_strategy()
  # Private: the public API has no "is this strategy multi-worker" query
  # (see tests/test_private_apis.py).
  multi_worker = (
      isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
      strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access
  if not multi_worker:
    return logs
  return {k: tf.reshape(v, [1]) for k, v in logs.items()}


class CheckedStepsMixin:
  """`fit`/`evaluate`/`predict` whose input values are checked under XLA
  too (`validation.checked_outside_xla`), and train/test steps whose logs
  reduce under MultiWorkerMirroredStrategy (`reducible_logs`).

  Mixed into `RealNVP` before `keras.Model`; needs its `validate_inputs`,
  `image_shape` and `num_classes`.
  """

  def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
    """`keras.Model.fit`; input values checked under XLA too."""
    return super().fit(self._xla_safe(x), y, *args,
                       validation_data=self._xla_safe(validation_data),
                       **kwargs)

  def evaluate(self, x=None, *args, **kwargs):
    """`keras.Model.evaluate`; input values checked under XLA too."""
    return super().evaluate(self._xla_safe(x), *args, **kwargs)

  def predict(self, x, *args, **kwargs):
    """`keras.Model.predict`; input values checked under XLA too."""
    return super().predict(self._xla_safe(x), *args, **kwargs)

  def _xla_safe(self, data):
    if not self.validate_inputs or not getattr(self, "jit_compile", False):
      return data
    return validation.checked_outside_xla(
        data, self.image_shape, self.num_classes,
        levels=getattr(self, "dequantizer", None) is not None)

  def train_step(self, data):
    return reducible_logs(super().train_step(data))

  def test_step(self, data):
    return reducible_logs(super().test_step(data))


def named_optimizer(optimizer):
  """`optimizer`, with the names "adam" and "adamax" resolved to the fused
  `tfp_realnvp.optimizers` classes (Keras' resolves them to its own)."""
  if isinstance(optimizer, str) and optimizer.lower() in optimizers.OPTIMIZERS:
    return optimizers.OPTIMIZERS[optimizer.lower()]()
  return optimizer


def loss_scaled(optimizer, mixed_precision):
  """The optimizer, in a `LossScaleOptimizer` under 'mixed_float16'.

  float16 gradients underflow without loss scaling; Keras adds it only when
  the *model's* policy is mixed, and `RealNVP` itself stays float32.
  """
  if mixed_precision != "mixed_float16":
    return optimizer
  optimizer = keras.optimizers.get(optimizer)
  if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
  return optimizer

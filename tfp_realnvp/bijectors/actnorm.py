"""Activation normalization, Glow's actnorm (Kingma & Dhariwal, 2018, §3.1).

A per-channel affine map with learned parameters, initialised from data:

```
  forward:      y = (x + b) · exp(s)            (per channel, every pixel)
  log|det J|:   H · W · Σ_c s_c
  inverse:      x = y · exp(−s) − b
  data-dependent init (first batch):  b = −mean(x),  s = −log(std(x) + ε)
```

so that the first batch leaves every actnorm with zero mean and unit
variance per channel. Unlike batch norm it uses no batch statistics after
that: training and inference compute the same function.

The variables live in `ActNormState` (a Keras 3 layer owned by the model);
`initialized` (0 or 1) is a variable too, so it is saved in checkpoints and
`.keras` files and a restored model is never initialised again.

Data-dependent initialisation runs eagerly inside `data_init()` (what
`RealNVP.initialize_actnorm` opens before the first `fit`): every actnorm
whose state is not initialised computes the statistics of its input, assigns
them, and marks itself. It runs outside any replica step, on one global
batch, so under a `tf.distribute` strategy every replica receives the same
values (exact with distribution strategies). Outside `data_init()` an
uninitialised actnorm is an identity map with trainable `b`, `s` (that is
what `data_init=False` gives).
"""

import contextlib
import threading

import keras
import tensorflow as tf

from tfp_realnvp.bijectors import _util
from tfp_realnvp.bijectors._one_pass import PerPixelBijector

_local = threading.local()


@contextlib.contextmanager
def data_init():
  """Within it, uninitialised actnorms initialise from their input (eager)."""
  previous = getattr(_local, "active", False)
  _local.active = True
  try:
    yield
  finally:
    _local.active = previous


def _initializing():
  return getattr(_local, "active", False)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ActNormState(keras.layers.Layer):
  """Keras 3 layer: the variables of one `ActNorm` bijector (no call).

  Args:
    epsilon: added to the standard deviation in the data-dependent
      initialisation.
  """

  def __init__(self, epsilon=1e-6, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.bias = self.add_weight(name="bias", shape=(channels,),
                                initializer="zeros")
    self.log_scale = self.add_weight(name="log_scale", shape=(channels,),
                                     initializer="zeros")
    self.initialized = self.add_weight(
        name="initialized", shape=(), initializer="zeros", trainable=False,
        aggregation="only_first_replica")

  def is_initialized(self):
    return bool(self.initialized.numpy() > 0.5)

  def initialize_from(self, x):
    """Sets `b`, `s` from a batch `[N, H, W, C]` (eager)."""
    x = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x, axes=[0, 1, 2])
    self.bias.assign(-mean)
    self.log_scale.assign(-tf.math.log(tf.sqrt(variance) + self.epsilon))
    self.initialized.assign(1.0)

  def get_config(self):
    config = super().get_config()
    config.update(epsilon=self.epsilon)
    return config


class ActNorm(PerPixelBijector):
  """Actnorm on `[..., H, W, C]` (event rank 3); state in `ActNormState`."""

  def __init__(self, state, validate_args=False, name="actnorm"):
    super().__init__(state, validate_args=validate_args, name=name)

  def _ldj(self, x):
    return self.pixels(x) * tf.reduce_sum(
        tf.cast(self._state.log_scale, x.dtype))

  def _augmented_forward(self, x):
    if _initializing() and tf.executing_eagerly() and (
        not self._state.is_initialized()):
      self._state.initialize_from(_util.flatten_batch(x)[0])
    bias = tf.cast(self._state.bias, x.dtype)
    log_scale = tf.cast(self._state.log_scale, x.dtype)
    y = (x + bias) * tf.exp(log_scale)
    return y, tf.broadcast_to(self._ldj(x), tf.shape(x)[:-3])

  def _augmented_inverse(self, y):
    bias = tf.cast(self._state.bias, y.dtype)
    log_scale = tf.cast(self._state.log_scale, y.dtype)
    x = y * tf.exp(-log_scale) - bias
    return x, tf.broadcast_to(-self._ldj(y), tf.shape(y)[:-3])

"""Dequantization: integer pixel levels -> continuous pixels (Dinh et al., 2017, §4.1).

A flow is a density over continuous values; images are integers `k ∈
{0, ..., 255}`. Modelling `x = k + u`, `u ∈ [0, 1)^D`, gives the bound

```
  log P(k) ≥ E_{u ~ q(·|k)} [ log p(k + u) − log q(u | k) ]   (Theis et al., 2016)
```

which is tight in expectation for the best `q`. `RealNVP(dequantizer=...)`
makes the model dequantize its own inputs: `model(levels)` (and so `fit`
and `evaluate`) returns `log p(k + u) − log q(u | k)` per image, and the
data pipeline feeds integer levels. Without a dequantizer (the default) the
pipeline adds the noise and the model sees `k + u` (`training.data`).

A dequantizer is a Keras layer (its variables, if any, belong to the model):
`x, log_q = dequantizer(levels, training=...)`, `log_q` of shape `[N]`.
A new one (e.g. the variational dequantizer of Flow++, Ho et al., 2019) is
one subclass of `Dequantizer` plus one entry in `DEQUANTIZERS`.
"""

import keras
import tensorflow as tf

# Largest noise whose sum with any level 0..255 stays below the next level in
# float32 (the spacing of float32 at 255 is 2**-16): k + u < k + 1 exactly.
MAX_NOISE = 1.0 - 2.0 ** -15


class Dequantizer(keras.layers.Layer):
  """Base class: `call(levels, training) -> (levels + u, log q(u | levels))`."""

  def call(self, levels, training=False):
    raise NotImplementedError


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class UniformDequantizer(Dequantizer):
  """`u ~ U[0, 1)` per pixel, `log q = 0` (the paper's dequantization).

  Args:
    seed: in inference mode (`evaluate`, `model(x)`), the noise is the
      stateless draw of this seed: the same batch always gets the same
      bound. In training mode each call draws fresh noise.
  """

  def __init__(self, seed=0, **kwargs):
    super().__init__(**kwargs)
    self.seed = int(seed)

  def call(self, levels, training=False):
    levels = tf.convert_to_tensor(levels, tf.float32)
    if training:
      u = tf.random.uniform(tf.shape(levels))
    else:
      u = tf.random.stateless_uniform(tf.shape(levels), seed=[self.seed, 0])
    x = levels + tf.minimum(u, MAX_NOISE)
    return x, tf.zeros(tf.shape(levels)[:1])

  def get_config(self):
    config = super().get_config()
    config.update(seed=self.seed)
    return config


# `dequantizer=` option of `RealNVP` -> class.
DEQUANTIZERS = {"uniform": UniformDequantizer}

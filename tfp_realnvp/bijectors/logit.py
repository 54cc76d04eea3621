"""Pixel preprocessing as a bijector: dequantized pixels -> logit space.

Real NVP models `logit(α + (1 - 2α)·x/256)` of the dequantized pixels
`x = pixel + u, u ~ U[0, 1)` (§4.1; α = 0.05 in the authors' released code).
Because the map is part of the bijector chain its Jacobian is part of
`log_prob`, so `log_prob` is the exact density of the dequantized pixels `x`
on `[0, 256)^D`, and `-log_prob(x) / (D·ln 2)` their exact bits/dim. For the
discrete pixels it is the usual dequantization bound: its expectation over
`u` upper-bounds the discrete data's bits/dim (Theis et al. 2016), and one
draw of `u` is a one-sample estimate of that bound.

```
  forward:   p = α + (1 - 2α)·x/256,      y = log p - log(1 - p)
  log|det|:  log((1 - 2α)/256) - log p - log(1 - p)      (per element)
             = log((1 - 2α)/256) + softplus(y) + softplus(-y)
  inverse:   x = (sigmoid(y) - α) · 256/(1 - 2α)
```
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.bijectors import cache


class LogitPreprocess(cache.EvaluationScoped, tfp.bijectors.Bijector):
  """Elementwise `x ∈ [0, 256) -> logit(α + (1-2α)·x/256)` (data -> latent).

  Args:
    alpha: the boundary shrinkage α in (0, 0.5); the authors used 0.05.
    num_levels: number of pixel levels (256 for 8-bit images).
    validate_args: assert that inputs to `forward` lie in `[0, num_levels]`.
  """

  def __init__(self, alpha=0.05, num_levels=256, validate_args=False,
               name="logit_preprocess"):
    parameters = dict(locals())
    if not 0.0 < alpha < 0.5:
      raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if num_levels < 2:
      raise ValueError(f"num_levels must be >= 2, got {num_levels}")
    self._alpha = float(alpha)
    self._num_levels = float(num_levels)
    self._slope = (1.0 - 2.0 * self._alpha) / self._num_levels
    super().__init__(forward_min_event_ndims=0, validate_args=validate_args,
                     parameters=parameters, name=name)

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  @property
  def alpha(self):
    return self._alpha

  def _maybe_assert_range(self, x):
    if not self.validate_args:
      return x
    with tf.control_dependencies([
        tf.debugging.assert_greater_equal(
            x, tf.zeros([], x.dtype),
            message="pixel values must be >= 0 (dequantized pixels in "
                    f"[0, {int(self._num_levels)}))"),
        tf.debugging.assert_less_equal(
            x, tf.constant(self._num_levels, x.dtype),
            message=f"pixel values must be <= {int(self._num_levels)} "
                    f"(dequantized pixels in [0, {int(self._num_levels)}))")]):
      return tf.identity(x)

  def _forward(self, x):
    x = self._maybe_assert_range(x)
    p = self._alpha + self._slope * x
    return tf.math.log(p) - tf.math.log1p(-p)

  def _inverse(self, y):
    return (tf.sigmoid(y) - self._alpha) / self._slope

  def _inverse_log_det_jacobian(self, y):
    return -(tf.math.log(tf.constant(self._slope, y.dtype)) +
             tf.nn.softplus(y) + tf.nn.softplus(-y))

  def _forward_log_det_jacobian(self, x):
    p = self._alpha + self._slope * x
    return (tf.math.log(tf.constant(self._slope, x.dtype)) -
            tf.math.log(p) - tf.math.log1p(-p))

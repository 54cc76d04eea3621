"""Base class for bijectors whose value and log-det come from one pass.

TFP calls `_forward` and `_forward_log_det_jacobian` separately. For a
coupling that would run the s/t network twice (and apply Keras batch-norm
updates twice). Subclasses here implement `_augmented_forward(x) -> (y, fldj)`
and `_augmented_inverse(y) -> (x, ildj)` once; TFP's greedy-attribute cache
(the mechanism `tfb.FFJORD` uses) stores the log-det next to the value, so
`forward` followed by `forward_log_det_jacobian` on the same tensor within
one evaluation (what `TransformedDistribution.log_prob` does) costs one
network pass. Entries never outlive the evaluation they were computed in
(`tfp_realnvp.bijectors.evaluation()`): the weights may change in between.
"""

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.bijectors import cache


class OnePassBijector(cache.EvaluationScoped, tfp.bijectors.Bijector):
  """A `tfb.Bijector` that computes its value and log-det together."""

  _cache = cache.EvaluationCacheWithGreedyAttrs(
      forward_name="_cached_forward", inverse_name="_cached_inverse")

  @classmethod
  def _parameter_properties(cls, dtype):
    return dict()

  def _augmented_forward(self, x):
    """Returns `(y, forward log-det per event)`."""
    raise NotImplementedError

  def _augmented_inverse(self, y):
    """Returns `(x, inverse log-det per event)`."""
    raise NotImplementedError

  def _cached_forward(self, x):
    y, fldj = self._augmented_forward(x)
    return y, {"ildj": -fldj}

  def _cached_inverse(self, y):
    x, ildj = self._augmented_inverse(y)
    return x, {"ildj": ildj}

  def _forward(self, x):
    return self._augmented_forward(x)[0]

  def _inverse(self, y):
    return self._augmented_inverse(y)[0]

  def _forward_log_det_jacobian(self, x):
    self.forward(x)  # one evaluation that fills the cache, or a cache hit
    return -self._cache.forward_attributes(x)["ildj"]

  def _inverse_log_det_jacobian(self, y):
    self.inverse(y)
    return self._cache.inverse_attributes(y)["ildj"]


class PerPixelBijector(OnePassBijector):
  """A one-pass bijector on images `[..., H, W, C]` (event rank 3) that maps
  every pixel's channel vector alike, with its variables in a Keras layer
  `state` (actnorm, the invertible 1×1 convolution): its log-det is
  `pixels(x)` times the per-pixel one."""

  def __init__(self, state, validate_args=False, name=None):
    parameters = dict(locals())
    self._state = state
    super().__init__(forward_min_event_ndims=3, validate_args=validate_args,
                     parameters=parameters, name=name)

  @property
  def state(self):
    return self._state

  @staticmethod
  def pixels(x):
    """`H·W` of `x`, in its dtype (a constant when the shape is static)."""
    height, width = x.shape[-3], x.shape[-2]
    if height is not None and width is not None:
      return tf.constant(height * width, x.dtype)
    return tf.cast(tf.shape(x)[-3] * tf.shape(x)[-2], x.dtype)

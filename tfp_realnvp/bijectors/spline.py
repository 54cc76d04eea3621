"""The rational-quadratic spline map of a spline coupling (Durkan et al., 2019).

Neural Spline Flows replace the coupling's `x·exp(s) + t` by a monotone
rational-quadratic spline per element whose knots come from the conditioner.
The transform is TFP's `tfb.RationalQuadraticSpline` (the identity outside
`[−B, B]`); this module turns the conditioner's raw output into its
parameters and restricts it to the elements a coupling changes.

```
  raw θ ∈ R^(3K−1) per element  ->  widths  w = 2B·(m + (1 − K·m)·softmax(θ[:K]))
                                    heights h = 2B·(m + (1 − K·m)·softmax(θ[K:2K]))
                                    inner slopes d = softplus(θ[2K:]) / log 2
  K bins on [−B, B], boundary slopes 1 (the tails join the identity), m = 1e-3
  log|det J| = Σ_active log S'(x)
```

Near the identity at initialisation: `θ = 0` (the conditioner's head starts
at zero, as for the affine coupling) gives equal bins, equal widths and
heights and every slope exactly 1: the spline is the identity up to
rounding (the bin arithmetic is not bit-exact), so training starts from the
identity map. Elements a coupling does not change (`active = 0`) pass
through exactly, with log-det 0.
"""

import math

import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp.bijectors import cache

MIN_BIN_FRACTION = 1e-3  # m: no bin narrower than 0.1% of the interval


class _RationalQuadraticSpline(cache.EvaluationScoped,
                               tfp.bijectors.RationalQuadraticSpline):
  """`tfb.RationalQuadraticSpline` whose cache entries live for one
  evaluation (TFP's class cache would keep every traced graph alive)."""


def check_options(bins, bound):
  """Raises a `ValueError` unless `bins` is an integer >= 2 and `bound` a
  finite number > 0."""
  if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
    raise ValueError(f"spline_bins must be an integer >= 2, got {bins!r}")
  if isinstance(bound, bool) or not (isinstance(bound, (int, float)) and
                                     math.isfinite(bound) and bound > 0):
    raise ValueError(f"spline_bound must be a finite number > 0, got "
                     f"{bound!r}")


def params_per_element(bins):
  """Conditioner outputs per transformed element: K widths, K heights and
  K − 1 inner slopes."""
  return 3 * bins - 1


class SplineMap:
  """The elementwise rational-quadratic spline of one coupling call.

  Same interface as `coupling.Affine` (`forward`, `inverse`, both log-dets
  with `event_ndims`).

  Args:
    params: raw conditioner output `[..., C·(3K−1)]` (element-major: the
      parameters of channel `c` are `c·(3K−1) … (c+1)·(3K−1) − 1`).
    bins: `K`.
    bound: `B`, the spline acts on `[−B, B]`.
    active: `None`, or a 0/1 tensor broadcastable to the input: where 0 the
      input passes through unchanged with log-det 0.
  """

  def __init__(self, params, bins, bound, active=None):
    shape = tf.concat([tf.shape(params)[:-1], [-1, 3 * bins - 1]], axis=0)
    theta = tf.reshape(params, shape)
    dtype = theta.dtype
    m = tf.constant(MIN_BIN_FRACTION, dtype)
    width = tf.constant(2.0 * bound, dtype)

    def bin_sizes(logits):
      return width * (m + (1.0 - bins * m) * tf.nn.softmax(logits, axis=-1))

    slopes = tf.nn.softplus(theta[..., 2 * bins:]) / tf.constant(
        math.log(2.0), dtype)
    self._spline = _RationalQuadraticSpline(
        bin_widths=bin_sizes(theta[..., :bins]),
        bin_heights=bin_sizes(theta[..., bins:2 * bins]),
        knot_slopes=tf.maximum(slopes, tf.constant(1e-6, dtype)),
        range_min=tf.constant(-bound, dtype))
    self._active = active

  def _select(self, x, y):
    # TFP's spline loses the static channel count when the batch size is
    # unknown (a traced `fit` or a serving signature); it is x's.
    if not tf.executing_eagerly():
      y.set_shape(x.shape)
    if self._active is None:
      return y
    return x * (1.0 - self._active) + y * self._active

  def _sum(self, ldj, event_ndims):
    if self._active is not None:
      ldj = ldj * self._active
    return tf.reduce_sum(ldj, axis=list(range(-event_ndims, 0)))

  def forward(self, x):
    return self._select(x, self._spline.forward(x))

  def inverse(self, y):
    return self._select(y, self._spline.inverse(y))

  def forward_log_det_jacobian(self, x, event_ndims):
    return self._sum(self._spline.forward_log_det_jacobian(x, event_ndims=0),
                     event_ndims)

  def inverse_log_det_jacobian(self, y, event_ndims):
    return self._sum(self._spline.inverse_log_det_jacobian(y, event_ndims=0),
                     event_ndims)

"""The rational-quadratic spline map of a spline coupling (Durkan et al., 2019).

Neural Spline Flows replace the coupling's `x·exp(s) + t` by a monotone
rational-quadratic spline per element whose knots come from the conditioner.
The spline is TFP's `tfb.RationalQuadraticSpline` (the identity outside
`[−B, B]`): its parameters and its bin search. This module turns the
conditioner's raw output into those parameters, computes the value and the
log-det from one bin search (TFP searches again for the log-det), and
restricts the map to the elements a coupling changes.

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

MIN_BIN_FRACTION = 1e-3  # m: no bin narrower than 0.1% of the interval


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
    # TFP's spline holds the parameters and finds each element's bin
    # (`_compute_shared`, once per direction); the value and the log-det
    # are computed here from that one search (`_pair`).
    self._spline = tfp.bijectors.RationalQuadraticSpline(
        bin_widths=bin_sizes(theta[..., :bins]),
        bin_heights=bin_sizes(theta[..., bins:2 * bins]),
        knot_slopes=tf.maximum(slopes, tf.constant(1e-6, dtype)),
        range_min=tf.constant(-bound, dtype))
    self._active = active
    self._last = {}  # direction -> (input, output, log-det)

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

  def _pair(self, value, inverse):
    """`(output, elementwise log-det of this direction)` from one bin
    search, remembered for the last tensor of each direction (`forward`
    then `forward_log_det_jacobian` on the same tensor search once)."""
    last = self._last.get(inverse)
    if last is None or last[0] is not value:
      last = self._last[inverse] = (value,) + (
          _inverse_and_log_det(self._spline, value) if inverse else
          _forward_and_log_det(self._spline, value))
    return last[1:]

  def forward(self, x):
    return self._select(x, self._pair(x, inverse=False)[0])

  def inverse(self, y):
    return self._select(y, self._pair(y, inverse=True)[0])

  def forward_log_det_jacobian(self, x, event_ndims):
    return self._sum(self._pair(x, inverse=False)[1], event_ndims)

  def inverse_log_det_jacobian(self, y, event_ndims):
    return self._sum(self._pair(y, inverse=True)[1], event_ndims)


# TFP's `RationalQuadraticSpline` computes the bin search (`_compute_shared`:
# knot positions, searchsorted, six gathers) again for the log-det: a spline
# coupling's training step traced twice the search. The formulas are those
# of Durkan et al. (2019), eqs. 4 and 5 and appendix A.3, in the bin found
# once; tests/test_spline.py checks them against TFP's.
# pylint: disable=protected-access


def _log_slope(d, xi):
  """`log S'(x)` inside bin `k` at relative position `ξ` (eq. 5)."""
  one_minus = 1.0 - xi
  denominator = d.s_k + (d.d_kp1 + d.d_k - 2.0 * d.s_k) * xi * one_minus
  numerator = d.s_k ** 2 * (d.d_kp1 * xi ** 2 + 2.0 * d.s_k * xi * one_minus
                            + d.d_k * one_minus ** 2)
  return tf.math.log(numerator) - 2.0 * tf.math.log(denominator), denominator


def _forward_and_log_det(spline_bijector, x):
  d = spline_bijector._compute_shared(x=x)
  half = tf.constant(0.5, x.dtype)
  xi = tf.where(d.out_of_bounds, half, (x - d.x_k) / d.w_k)
  log_slope, denominator = _log_slope(d, xi)
  inside = d.y_k + d.h_k * (d.s_k * xi ** 2 + d.d_k * xi * (1.0 - xi)) / (
      denominator)
  zero = tf.zeros([], x.dtype)
  return (tf.where(d.out_of_bounds, x, inside),
          tf.where(d.out_of_bounds, zero, log_slope))


def _inverse_and_log_det(spline_bijector, y):
  d = spline_bijector._compute_shared(y=y)
  zero = tf.zeros([], y.dtype)
  rel_y = tf.where(d.out_of_bounds, zero, y - d.y_k)
  # ξ solves a·ξ² + b·ξ + c = 0 (appendix A.3), in the form that stays
  # accurate when 4ac is small.
  curvature = rel_y * (d.d_kp1 + d.d_k - 2.0 * d.s_k)
  a = d.h_k * (d.s_k - d.d_k) + curvature
  b = d.h_k * d.d_k - curvature
  c = -d.s_k * rel_y
  root = tf.sqrt(tf.maximum(b * b - 4.0 * a * c, zero))
  xi = tf.where(tf.equal(rel_y, zero), zero, (2.0 * c) / (-b - root))
  log_slope, _ = _log_slope(d, xi)
  return (tf.where(d.out_of_bounds, y, xi * d.w_k + d.x_k),
          tf.where(d.out_of_bounds, zero, -log_slope))

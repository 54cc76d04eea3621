"""Affine coupling layer of Real NVP (Dinh et al., 2017, eq. 4-9).

Direction convention of this package: `forward` is the paper's `f`, data ->
latent (the normalizing direction); `inverse` is the generative direction.
`RealNVP.distribution()` therefore wraps the whole flow in `tfb.Invert`.

```
  forward (eq. 9):   y = b⊙x + (1-b)⊙(x⊙exp(s(b⊙x)) + t(b⊙x))
  log|det J| (eq. 6): Σ (1-b)⊙s(b⊙x)
  inverse (eq. 8):   x = b⊙y + (1-b)⊙((y - t(b⊙y))⊙exp(-s(b⊙y)))
```

The formula exists once, in `Affine(s, t)` (what TFP's `tfb.RealNVP`
builds as `tfb.Shift(t)(tfb.Scale(log_scale=s))` in its `bijector_fn`); the
forward value, the inverse and both log-dets come from it. What `b` is, and which part the s/t network sees, is the mask strategy
(`tfp_realnvp.bijectors.masks`: checkerboard or channel). `additive=True`
is the NICE coupling: `affine(None, t)` is `tfb.Shift(t)`, log-det 0.
`coupling='spline'` replaces `x·exp(s) + t` by a rational-quadratic spline
per element (Neural Spline Flows; `bijectors.spline`); every transform is a
`CouplingTransform` in `COUPLINGS`.

The forward value and its log-det come from one evaluation of the s/t
network (TFP's greedy-attribute cache, as in `tfb.FFJORD`): the network,
and the Keras batch-norm updates inside it, run once per call.
"""

import tensorflow as tf

from tfp_realnvp.bijectors import _util
from tfp_realnvp.bijectors import masks
from tfp_realnvp.bijectors import spline
from tfp_realnvp.bijectors._one_pass import OnePassBijector

# Re-exported: the mask names and helpers of `masks`.
CHECKERBOARD = masks.CHECKERBOARD
CHANNEL = masks.CHANNEL
MASK_TYPES = masks.MASK_TYPES
checkerboard_mask = masks.checkerboard_mask

TRAINING_INVERSE_ERROR = (
    "{name}: the inverse of a training-mode flow is not computed. Its s/t "
    "networks would normalize latent-side inputs with their own batch "
    "statistics (and update the moving averages from generated data), so it "
    "would not invert the training-mode forward pass. Use training=False "
    "(model.flow(training=False), model.distribution(training=False)) to "
    "sample or decode; within one evaluation the inverse of a training-mode "
    "forward result is served exactly from the cache")


class Affine:
  """The elementwise map `x -> x·exp(s) + t` (eq. 9), the formula once.

  `log_scale=None` is `x -> x + t` (additive coupling, log-det 0). Same
  interface as a TFP bijector (`forward`, `inverse`, both log-dets with
  `event_ndims`), as TFP's `tfb.Shift(t)(tfb.Scale(log_scale=s))` would
  be, without building TFP bijector objects per call (which cost ~10 ms per
  coupling in eager mode).
  """

  def __init__(self, log_scale, shift):
    self.log_scale = log_scale
    self.shift = shift

  def forward(self, x):
    if self.log_scale is None:
      return x + self.shift
    return x * tf.exp(self.log_scale) + self.shift

  def inverse(self, y):
    if self.log_scale is None:
      return y - self.shift
    return (y - self.shift) * tf.exp(-self.log_scale)

  def forward_log_det_jacobian(self, x, event_ndims):
    """`Σ s` over the last `event_ndims` axes (eq. 6), `0` if additive."""
    if self.log_scale is None:
      return tf.zeros(tf.shape(x)[:-event_ndims], x.dtype)
    return tf.reduce_sum(self.log_scale, axis=list(range(-event_ndims, 0)))

  def inverse_log_det_jacobian(self, y, event_ndims):
    return -self.forward_log_det_jacobian(y, event_ndims)


def affine(log_scale, shift):
  """`Affine(log_scale, shift)`: the bijector_fn of the affine couplings."""
  return Affine(log_scale, shift)


class CouplingTransform:
  """How a coupling maps its transformed part, given the conditioner.

  The conditioner (`networks.CouplingResNet`) returns `(log_scale, shift)`
  for the transformed part, `log_scale` only when `uses_log_scale` (its
  head then has twice the channels and a bounded `scale·tanh(raw)`), and
  `params_per_element` values per transformed element in `shift` (element
  major). Calling the transform with both, and the mask's `active` elements
  (`None`: all), gives an elementwise bijector with `forward`, `inverse`
  and both log-dets (`event_ndims`). The masks set both to zero outside the
  changed part; a transform whose zero parameters are not exactly the
  identity must pass the inactive elements through itself (`active`). A
  new coupling transform is one subclass and one entry in `COUPLINGS`;
  `RealNVP(coupling=...)` takes its key, and the model's options named in
  `TRANSFORM_OPTIONS` reach its `from_options`.
  """

  uses_log_scale = True
  params_per_element = 1

  @classmethod
  def from_options(cls, **options):
    """The transform for the model's `TRANSFORM_OPTIONS` (ignored here)."""
    del options
    return cls()

  def __call__(self, log_scale, shift, active=None):
    raise NotImplementedError


class AffineTransform(CouplingTransform):
  """Real NVP: `x·exp(s) + t` (eq. 9), log-det `Σ s`."""

  def __call__(self, log_scale, shift, active=None):
    del active  # s = t = 0 is exactly the identity
    return affine(log_scale, shift)


class AdditiveTransform(CouplingTransform):
  """NICE: `x + t`, log-det 0 (the conditioner has no log-scale head)."""

  uses_log_scale = False

  def __call__(self, log_scale, shift, active=None):
    del log_scale, active
    return affine(None, shift)


class SplineTransform(CouplingTransform):
  """Neural Spline Flows: a monotone rational-quadratic spline per element
  (Durkan et al., 2019) with `bins` bins on `[−bound, bound]`, the identity
  outside; TFP's `tfb.RationalQuadraticSpline` (`bijectors.spline`).

  The conditioner gives `3·bins − 1` values per element (softmax widths and
  heights scaled to `2·bound`, softplus inner slopes; the boundary slopes
  are 1, so the tails join the identity). Its zero-initialised head makes
  every spline the identity at the start of training.

  Args:
    bins: `K >= 2` (`RealNVP(spline_bins=...)`, default 8).
    bound: `B > 0` (`RealNVP(spline_bound=...)`, default 3.0: the logit
      preprocessing maps pixels into about [−3, 3]).
  """

  uses_log_scale = False

  def __init__(self, bins=8, bound=3.0):
    spline.check_options(bins, bound)
    self.bins = int(bins)
    self.bound = float(bound)
    self.params_per_element = spline.params_per_element(self.bins)

  @classmethod
  def from_options(cls, spline_bins=8, spline_bound=3.0, **options):
    del options
    return cls(spline_bins, spline_bound)

  def __call__(self, log_scale, shift, active=None):
    del log_scale
    return spline.SplineMap(shift, self.bins, self.bound, active)


# `coupling=` option of `RealNVP` and `MultiScaleRealNVP` -> transform.
COUPLINGS = {"affine": AffineTransform, "additive": AdditiveTransform,
             "spline": SplineTransform}
# The `RealNVP` options handed to a transform's `from_options`.
TRANSFORM_OPTIONS = ("spline_bins", "spline_bound")


def make_transform(coupling, **options):
  """The `CouplingTransform` of a `COUPLINGS` key (built with the
  `TRANSFORM_OPTIONS` given; a `ValueError` naming the keys otherwise), or
  `coupling` itself when it is one."""
  if isinstance(coupling, CouplingTransform):
    return coupling
  if coupling not in COUPLINGS:
    raise ValueError(f"coupling must be one of {tuple(COUPLINGS)}, got "
                     f"{coupling!r}")
  return COUPLINGS[coupling].from_options(**options)


def conditioner_input_channels(mask_type, channels, checkerboard="masked",
                               spatial=None):
  """Channels the s/t network of a coupling receives (at `(H, W)`)."""
  return masks.make_mask(mask_type, 0, checkerboard).conditioner_input_channels(
      channels, spatial)


def conditioner_output_channels(mask_type, channels, checkerboard="masked",
                                spatial=None):
  """Channels of `s` and of `t` for a coupling (at `(H, W)`)."""
  return masks.make_mask(mask_type, 0, checkerboard).conditioner_output_channels(
      channels, spatial)


class AffineCoupling(OnePassBijector):
  """Real NVP affine coupling on `[..., H, W, C]` images (event rank 3).

  Example:

  ```python
  import tensorflow as tf
  from tfp_realnvp import networks
  from tfp_realnvp.bijectors import AffineCoupling

  net = networks.CouplingResNet(out_channels=3, num_filters=16, num_blocks=1)
  net.build((None, 8, 8, 4))          # checkerboard: C + 1 input channels
  coupling = AffineCoupling(net, mask_type="checkerboard", parity=0)
  x = tf.random.normal([2, 8, 8, 3])
  y = coupling.forward(x)              # data -> latent (paper eq. 9)
  ldj = coupling.forward_log_det_jacobian(x, event_ndims=3)   # [2]
  x_back = coupling.inverse(y)
  ```

  Args:
    network: a Keras layer called as `log_scale, shift = network(h,
      training=...)`; `h` has `conditioner_input_channels(mask_type, C)`
      channels, outputs have `conditioner_output_channels(mask_type, C)`.
      `log_scale` may be `None` (then the coupling is additive).
    mask_type: 'checkerboard' or 'channel'.
    parity: 0 or 1, which half of the mask conditions.
    additive: NICE coupling (ignore the log-scale; log-det is 0): the same
      as `coupling='additive'`.
    training: passed to the network (Keras batch-norm mode). A training-mode
      coupling has no inverse of its own: `inverse` raises a `ValueError`
      (except for a result of `forward` in the same evaluation, which the
      cache returns exactly).
    checkerboard: how a checkerboard coupling is computed, a key of
      `masks.CHECKERBOARDS`: 'masked' (full resolution on `b⊙x`) or
      'squeezed' (the same partition on `space_to_depth(x, 2)`, the network
      at half resolution; odd sizes fall back to 'masked').
    coupling: the elementwise transform, a key of `COUPLINGS` ('affine',
      'additive', 'spline' with its defaults) or a `CouplingTransform`
      (e.g. `SplineTransform(bins=16, bound=4.0)`); `None`: 'additive' if
      `additive` else 'affine'. The network's head must have the
      transform's `params_per_element` channels per element.
    validate_args: unused (the channel count is checked statically).
    name: bijector name.
  """

  def __init__(self, network, mask_type=CHECKERBOARD, parity=0,
               additive=False, training=False, checkerboard="masked",
               coupling=None, validate_args=False, name=None):
    parameters = dict(locals())
    mask = masks.make_mask(mask_type, parity, checkerboard)
    if not callable(network):
      raise ValueError(f"network must be a callable Keras layer, got "
                       f"{type(network).__name__}")
    self._network = network
    self._mask = mask
    self._checkerboard = checkerboard
    self._coupling = make_transform(coupling or (
        "additive" if additive else "affine"))
    self._training = bool(training)
    super().__init__(
        forward_min_event_ndims=3, validate_args=validate_args,
        parameters=parameters,
        name=name or f"affine_coupling_{mask_type}_{parity}")

  @property
  def network(self):
    return self._network

  @property
  def mask(self):
    """The `masks.CouplingMask` strategy."""
    return self._mask

  @property
  def mask_type(self):
    return self._mask.mask_type

  @property
  def parity(self):
    return self._mask.parity

  @property
  def checkerboard(self):
    return self._checkerboard

  @property
  def additive(self):
    return not self._coupling.uses_log_scale

  @property
  def coupling(self):
    """The `CouplingTransform`."""
    return self._coupling

  @property
  def training(self):
    return self._training

  def _transform(self, x, inverse):
    """(output, log-det of this direction) for any batch shape."""
    self._mask.check(x, self.name)
    flat, batch_shape = _util.flatten_batch(x)
    conditioner_input, part = self._mask.split(flat)
    log_scale, shift = self._network(conditioner_input,
                                     training=self._training)
    shift = tf.cast(shift, flat.dtype)
    log_scale = (None if not self._coupling.uses_log_scale or
                 log_scale is None else tf.cast(log_scale, flat.dtype))
    bijector = self._coupling(*self._mask.restrict(flat, log_scale, shift),
                              active=self._mask.active(flat))
    if inverse:
      new = bijector.inverse(part)
      ldj = bijector.inverse_log_det_jacobian(part, event_ndims=3)
    else:
      new = bijector.forward(part)
      ldj = bijector.forward_log_det_jacobian(part, event_ndims=3)
    ldj = tf.broadcast_to(tf.cast(ldj, flat.dtype), tf.shape(flat)[:1])
    return (_util.unflatten_batch(self._mask.merge(flat, new), batch_shape),
            _util.unflatten_scalar(ldj, batch_shape))

  def _augmented_forward(self, x):
    return self._transform(x, inverse=False)

  def _augmented_inverse(self, y):
    if self._training:
      raise ValueError(TRAINING_INVERSE_ERROR.format(name=self.name))
    return self._transform(y, inverse=True)

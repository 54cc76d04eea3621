"""Affine coupling layer of Real NVP (Dinh et al., 2017, eq. 4-9).

Direction convention of this package: `forward` is the paper's `f`, data ->
latent (the normalizing direction); `inverse` is the generative direction.
`RealNVP.distribution()` therefore wraps the whole flow in `tfb.Invert`.

```
  forward (eq. 9):   y = b⊙x + (1-b)⊙(x⊙exp(s(b⊙x)) + t(b⊙x))
  log|det J| (eq. 6): Σ (1-b)⊙s(b⊙x)
  inverse (eq. 8):   x = b⊙y + (1-b)⊙((y - t(b⊙y))⊙exp(-s(b⊙y)))

  checkerboard mask b (parity 0)      channel mask (parity 0)
     1 0 1 0                            x = [x_a | x_b]  (channel halves)
     0 1 0 1                            y = [x_a | x_b⊙exp(s(x_a)) + t(x_a)]
     1 0 1 0
     0 1 0 1
```

The checkerboard mask is `b[i, j] = 1` where `(i + j) % 2 == parity`; its
network sees `concat(b⊙x, b)` (the mask as an extra channel). The channel
mask conditions on the first half of the channels (parity 0) or the second
(parity 1), and the s/t network runs on that half only: nothing is wasted
on multiplying by a mask. `additive=True` is the NICE coupling (s ≡ 0,
log-det 0).

The forward value and its log-det come from one evaluation of the s/t
network (TFP's greedy-attribute cache, as in `tfb.FFJORD`): the network,
and the Keras batch-norm updates inside it, run once per call.
"""

import tensorflow as tf
from tfp_realnvp.bijectors import _util
from tfp_realnvp.bijectors._one_pass import OnePassBijector

CHECKERBOARD = "checkerboard"
_TRAINING_INVERSE_ERROR = (
    "{name}: the inverse of a training-mode flow is not computed. Its s/t "
    "networks would normalize latent-side inputs with their own batch "
    "statistics (and update the moving averages from generated data), so it "
    "would not invert the training-mode forward pass. Use training=False "
    "(model.flow(training=False), model.distribution(training=False)) to "
    "sample or decode; within one evaluation the inverse of a training-mode "
    "forward result is served exactly from the cache")
CHANNEL = "channel"
MASK_TYPES = (CHECKERBOARD, CHANNEL)


def checkerboard_mask(height, width, parity, dtype=tf.float32):
  """`[1, H, W, 1]` mask, 1 where `(i + j) % 2 == parity`."""
  i = tf.range(height)[:, None]
  j = tf.range(width)[None, :]
  mask = tf.cast(tf.equal((i + j) % 2, parity), dtype)
  return mask[None, :, :, None]


def conditioner_input_channels(mask_type, channels):
  """Channels the s/t network of a coupling receives."""
  if mask_type == CHECKERBOARD:
    return channels + 1  # b⊙x and the mask itself
  return channels // 2


def conditioner_output_channels(mask_type, channels):
  """Channels of `s` and of `t` for a coupling."""
  if mask_type == CHECKERBOARD:
    return channels
  return channels - channels // 2


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
    additive: NICE coupling (ignore the log-scale; log-det is 0).
    training: passed to the network (Keras batch-norm mode). A training-mode
      coupling has no inverse of its own: `inverse` raises a `ValueError`
      (except for a result of `forward` in the same evaluation, which the
      cache returns exactly).
    validate_args: check that the input has a known, even channel count.
    name: bijector name.
  """


  def __init__(self, network, mask_type=CHECKERBOARD, parity=0,
               additive=False, training=False, validate_args=False,
               name=None):
    parameters = dict(locals())
    if mask_type not in MASK_TYPES:
      raise ValueError(f"mask_type must be one of {MASK_TYPES}, got "
                       f"{mask_type!r}")
    if parity not in (0, 1):
      raise ValueError(f"parity must be 0 or 1, got {parity!r}")
    if not callable(network):
      raise ValueError(f"network must be a callable Keras layer, got "
                       f"{type(network).__name__}")
    self._network = network
    self._mask_type = mask_type
    self._parity = int(parity)
    self._additive = bool(additive)
    self._training = bool(training)
    super().__init__(
        forward_min_event_ndims=3, validate_args=validate_args,
        parameters=parameters,
        name=name or f"affine_coupling_{mask_type}_{parity}")

  @property
  def network(self):
    return self._network

  @property
  def mask_type(self):
    return self._mask_type

  @property
  def parity(self):
    return self._parity

  @property
  def additive(self):
    return self._additive

  @property
  def training(self):
    return self._training

  # --- one evaluation of the s/t network -----------------------------------

  def _log_scale_and_shift(self, h):
    log_scale, shift = self._network(h, training=self._training)
    shift = tf.cast(shift, h.dtype)
    if self._additive or log_scale is None:
      log_scale = None
    else:
      log_scale = tf.cast(log_scale, h.dtype)
    return log_scale, shift

  def _check_channels(self, x):
    channels = x.shape[-1]
    if channels is None:
      raise ValueError(f"{self.name}: the channel dimension must be known "
                       f"statically, got shape {x.shape}")
    if self._mask_type == CHANNEL and channels < 2:
      raise ValueError(f"{self.name}: a channel coupling needs at least 2 "
                       f"channels, got shape {x.shape}")
    return channels

  def _checkerboard(self, x, direction):
    """Shared body of both directions for the checkerboard mask."""
    self._check_channels(x)
    mask = checkerboard_mask(tf.shape(x)[1], tf.shape(x)[2], self._parity,
                             x.dtype)
    inv_mask = 1.0 - mask
    masked = x * mask  # identical in both directions: y = x where b = 1
    h = tf.concat([masked, tf.broadcast_to(mask, tf.shape(masked[..., :1]))],
                  axis=-1)
    log_scale, shift = self._log_scale_and_shift(h)
    shift = shift * inv_mask
    if log_scale is None:
      out = x + direction * shift
      return out, tf.zeros(tf.shape(x)[:1], x.dtype)
    log_scale = log_scale * inv_mask
    if direction > 0:
      out = x * tf.exp(log_scale) + shift
    else:
      out = (x - shift) * tf.exp(-log_scale)
    return out, direction * tf.reduce_sum(log_scale, axis=[1, 2, 3])

  def _channel(self, x, direction):
    """Shared body of both directions for the channel mask."""
    channels = self._check_channels(x)
    half = channels // 2
    if self._parity == 0:
      cond, change = x[..., :half], x[..., half:]
    else:
      change, cond = x[..., :channels - half], x[..., channels - half:]
    log_scale, shift = self._log_scale_and_shift(cond)
    if log_scale is None:
      changed = change + direction * shift
      ldj = tf.zeros(tf.shape(x)[:1], x.dtype)
    elif direction > 0:
      changed = change * tf.exp(log_scale) + shift
      ldj = tf.reduce_sum(log_scale, axis=[1, 2, 3])
    else:
      changed = (change - shift) * tf.exp(-log_scale)
      ldj = -tf.reduce_sum(log_scale, axis=[1, 2, 3])
    parts = [cond, changed] if self._parity == 0 else [changed, cond]
    return tf.concat(parts, axis=-1), ldj

  def _transform(self, x, direction):
    """Returns (output, log-det of this direction) for any batch shape."""
    flat, batch_shape = _util.flatten_batch(x)
    if self._mask_type == CHECKERBOARD:
      out, ldj = self._checkerboard(flat, direction)
    else:
      out, ldj = self._channel(flat, direction)
    return (_util.unflatten_batch(out, batch_shape),
            _util.unflatten_scalar(ldj, batch_shape))

  def _augmented_forward(self, x):
    return self._transform(x, +1.0)

  def _augmented_inverse(self, y):
    if self._training:
      raise ValueError(_TRAINING_INVERSE_ERROR.format(name=self.name))
    return self._transform(y, -1.0)

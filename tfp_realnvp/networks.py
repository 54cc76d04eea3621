"""The s/t (log-scale / translation) networks of the affine couplings.

Real NVP (Dinh et al., 2017, §3.6 and §4.1) computes the log-scale `s` and
the translation `t` of every coupling with a deep convolutional residual
network that uses ReLU, skip connections, weight normalization (Salimans &
Kingma, 2016) and batch normalization. The log-scale is bounded as
`s = scale * tanh(raw)` with a learned per-channel `scale` (the authors'
released code); `t` is affine. The last convolution starts at zero
(`g = 0` in weight-norm terms), so every coupling starts as the identity.

```
 x_cond ─ conv3x3 ─┬─[BN─ReLU─conv3x3─BN─ReLU─conv3x3]─(+)─ ... ─ BN─ReLU─ conv3x3(zero) ─┬─ scale·tanh → s
                   └──────────────────────────────────┘   (num_blocks)                   └─ t
```

Everything here is a Keras 3 layer, so its weights belong to the owning
`keras.Model` and train with `fit`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import normalization
from tfp_realnvp import validation


class L2Penalty(keras.regularizers.Regularizer):
  """`l2 · Σx²`, Keras' `L2` regularizer, as TensorFlow's fused `L2Loss` op
  (`2 · l2 · tf.nn.l2_loss(x)`; its gradient is one multiply).

  Keras' `L2` writes a square, a reduction over a computed range of axes, a
  cast and a multiply per weight, and a reshape, a tile and multiplies for
  its gradient. Not part of any saved config (the layers save `l2`), so
  files written with Keras' `L2` load unchanged.
  """

  def __init__(self, l2):
    self.l2 = float(l2)

  def __call__(self, x):
    return (2.0 * self.l2) * tf.nn.l2_loss(x)

  def get_config(self):
    return {"l2": self.l2}


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class WeightNormConv2D(keras.layers.Layer):
  """A 'SAME' 2-D convolution with weight normalization: `w = g · v / ‖v‖`.

  Args:
    filters: number of output channels.
    kernel_size: odd spatial size of the square kernel.
    use_weight_norm: if False this is a plain convolution with kernel `v`.
    zero_init: start the effective kernel and bias at zero (`g = 0`), so the
      layer outputs zeros until trained. Used for the last layer of the s/t
      network, which makes a new coupling exactly the identity.
    l2: L2 penalty on `v` and `g` (Keras regularizer, collected in
      `model.losses`). The paper used 5e-5.
  """

  def __init__(self, filters, kernel_size=3, use_weight_norm=True,
               zero_init=False, l2=0.0, **kwargs):
    super().__init__(**kwargs)
    if filters < 1:
      raise ValueError(f"filters must be >= 1, got {filters}")
    if kernel_size < 1 or kernel_size % 2 != 1:
      raise ValueError(f"kernel_size must be a positive odd number, got "
                       f"{kernel_size}")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.use_weight_norm = bool(use_weight_norm)
    self.zero_init = bool(zero_init)
    self.l2 = float(l2)

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    regularizer = L2Penalty(self.l2) if self.l2 > 0 else None
    k = self.kernel_size
    if self.zero_init and not self.use_weight_norm:
      kernel_init = "zeros"
    else:
      kernel_init = keras.initializers.HeNormal()
    self.v = self.add_weight(
        name="kernel", shape=(k, k, in_channels, self.filters),
        initializer=kernel_init, regularizer=regularizer, autocast=False)
    if self.use_weight_norm:
      # w = g·v/||v||: g starts at 1 (each filter at unit norm), or at 0
      # with zero_init (the layer then outputs its bias, zero).
      self.g = self.add_weight(
          name="g", shape=(self.filters,),
          initializer="zeros" if self.zero_init else "ones",
          regularizer=regularizer, autocast=False)
    # autocast=False: weights are read in float32 (weight norm is computed
    # in float32) and cast explicitly where a mixed policy computes in half.
    self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                initializer="zeros", autocast=False)

  def kernel(self):
    """The effective convolution kernel (in the variables' dtype)."""
    v = tf.convert_to_tensor(self.v)
    if not self.use_weight_norm:
      return v
    inv_norm = tf.math.rsqrt(
        tf.reduce_sum(tf.square(v), axis=[0, 1, 2]) + 1e-12)
    # Each output filter v[..., j] rescaled to norm g[j].
    return v * (tf.convert_to_tensor(self.g) * inv_norm)

  def call(self, x):
    # The norm is taken in float32; only the convolution runs in the compute
    # dtype under a mixed-precision policy.
    y = tf.nn.conv2d(x, tf.cast(self.kernel(), x.dtype), strides=1,
                     padding="SAME")
    return tf.nn.bias_add(y, tf.cast(self.bias, x.dtype))

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.filters,)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  use_weight_norm=self.use_weight_norm,
                  zero_init=self.zero_init, l2=self.l2)
    return config


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class CouplingResNet(keras.layers.Layer):
  """Residual s/t network of one coupling layer.

  Called as `log_scale, shift = net(h, training=...)` where `h` is the
  conditioning input `[N, H, W, C_in]`; both outputs are
  `[N, H, W, out_channels]` (`log_scale` is `None` when `affine=False`, the
  additive/NICE coupling).

  Args:
    out_channels: channels of `s` and of `t` (the transformed part).
    num_filters: feature maps of the hidden convolutions.
    num_blocks: residual blocks (each BN-ReLU-conv-BN-ReLU-conv + skip).
    affine: also output a log-scale (False: translation only).
    use_batch_norm: batch normalization inside the residual blocks
      (`tfp_realnvp.normalization.BatchNorm`, the fused kernel).
    synchronized_batch_norm: under a multi-replica `tf.distribute` strategy,
      compute those statistics over the global batch (all-reduce).
    use_weight_norm: weight-normalised convolutions (paper §4.1).
    bn_momentum, bn_epsilon: of the inner batch-norm layers.
    log_scale_init: initial value of the learned per-channel factor in
      `s = scale · tanh(raw)`; it bounds |s| at initialisation (the clamp knob).
    kernel_size: spatial size of the hidden convolutions.
    l2: L2 penalty on the convolution weights (paper: 5e-5).
  """

  def __init__(self, out_channels, num_filters=32, num_blocks=4, affine=True,
               use_batch_norm=True, use_weight_norm=True, bn_momentum=0.9,
               bn_epsilon=1e-4, log_scale_init=1.0, kernel_size=3, l2=0.0,
               synchronized_batch_norm=True, **kwargs):
    super().__init__(**kwargs)
    if out_channels < 1:
      raise ValueError(f"out_channels must be >= 1, got {out_channels}")
    if num_blocks < 0:
      raise ValueError(f"num_blocks must be >= 0, got {num_blocks}")
    self.out_channels = int(out_channels)
    self.num_filters = int(num_filters)
    self.num_blocks = int(num_blocks)
    self.affine = bool(affine)
    self.use_batch_norm = bool(use_batch_norm)
    self.use_weight_norm = bool(use_weight_norm)
    self.bn_momentum = float(bn_momentum)
    self.bn_epsilon = float(bn_epsilon)
    self.log_scale_init = float(log_scale_init)
    self.kernel_size = int(kernel_size)
    self.l2 = float(l2)
    self.synchronized_batch_norm = bool(synchronized_batch_norm)

    # Keras does not hand a layer's dtype policy to the sublayers it creates:
    # pass it, or under a mixed policy every convolution would cast back to
    # float32 (mixed precision would only round the input).
    def conv(filters, name, zero_init=False):
      return WeightNormConv2D(filters, self.kernel_size,
                              use_weight_norm=self.use_weight_norm,
                              zero_init=zero_init, l2=self.l2, name=name,
                              dtype=self.dtype_policy)

    def norm(name):
      if not self.use_batch_norm:
        return None
      return normalization.BatchNorm(
          momentum=self.bn_momentum, epsilon=self.bn_epsilon,
          synchronized=self.synchronized_batch_norm, name=name,
          dtype=self.dtype_policy)

    self.in_conv = conv(self.num_filters, "in_conv")
    # Flat lists of layers (Keras tracks lists, not tuples inside them).
    self.block_convs = [conv(self.num_filters, f"block{i}_conv{j}")
                        for i in range(self.num_blocks) for j in (1, 2)]
    self.block_norms = ([norm(f"block{i}_bn{j}")
                         for i in range(self.num_blocks) for j in (1, 2)]
                        if self.use_batch_norm else [])
    self.out_norm = norm("out_bn")
    n_out = self.out_channels * (2 if self.affine else 1)
    self.out_conv = conv(n_out, "out_conv", zero_init=True)

  @classmethod
  def for_step(cls, step, num_filters, num_blocks, params_per_element=1,
               **kwargs):
    """The built network of one coupling `Step` of `real_nvp_flow.plan`
    (`params_per_element`: the coupling transform's, e.g. 3K − 1 for a
    K-bin spline)."""
    kwargs.setdefault("name", f"st_net_{step.index}")
    net = cls(step.out_channels * params_per_element,
              num_filters=num_filters, num_blocks=num_blocks, **kwargs)
    net.build((None,) + tuple(step.shape[:2]) + (step.in_channels,))
    return net

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    hidden = input_shape[:-1] + (self.num_filters,)
    self.in_conv.build(input_shape)
    for layer in self.block_convs + self.block_norms:
      layer.build(hidden)
    if self.out_norm is not None:
      self.out_norm.build(hidden)
    self.out_conv.build(hidden)
    if self.affine:
      self.log_scale_factor = self.add_weight(
          name="log_scale_factor", shape=(self.out_channels,),
          initializer=keras.initializers.Constant(self.log_scale_init),
          autocast=False)

  def _norm_relu(self, layer, h, training):
    if layer is not None:
      h = layer(h, training=training)
    return tf.nn.relu(h)

  def _block_norm(self, i):
    return self.block_norms[i] if self.use_batch_norm else None

  def call(self, h, training=False):
    h = self.in_conv(h)
    for i in range(0, 2 * self.num_blocks, 2):
      r = self.block_convs[i](self._norm_relu(self._block_norm(i), h, training))
      r = self.block_convs[i + 1](
          self._norm_relu(self._block_norm(i + 1), r, training))
      h = h + r
    out = self.out_conv(self._norm_relu(self.out_norm, h, training))
    # Under a mixed-precision policy the convolutions run in float16/bfloat16;
    # s and t leave in the variable dtype (float32), the flow's dtype.
    out = tf.cast(out, self.variable_dtype)
    if not self.affine:
      return None, out
    raw_s, shift = tf.split(out, 2, axis=-1)
    log_scale = tf.convert_to_tensor(self.log_scale_factor) * tf.tanh(raw_s)
    return log_scale, shift

  def get_config(self):
    config = super().get_config()
    config.update(out_channels=self.out_channels, num_filters=self.num_filters,
                  num_blocks=self.num_blocks, affine=self.affine,
                  use_batch_norm=self.use_batch_norm,
                  use_weight_norm=self.use_weight_norm,
                  bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                  log_scale_init=self.log_scale_init,
                  kernel_size=self.kernel_size, l2=self.l2,
                  synchronized_batch_norm=self.synchronized_batch_norm)
    return config


def soft_clamp(raw, clamp):
  """`clamp·tanh(raw / clamp)`: a log-scale bounded in `(−clamp, clamp)`,
  ≈ `raw` near 0; `clamp=None` leaves `raw` as it is."""
  if clamp is None:
    return raw
  c = tf.cast(clamp, raw.dtype)
  return c * tf.tanh(raw / c)


def scale_filters(num_filters, num_scales):
  """Per-scale s/t-network widths (finest first) from an int or a list.

  An int is the finest scale's width, doubled per coarser scale.
  """
  if isinstance(num_filters, (int, np.integer)) and not isinstance(
      num_filters, bool):
    validation.check_positive_int("num_filters", num_filters)
    return tuple(int(num_filters) * 2 ** s for s in range(num_scales))
  try:
    widths = tuple(num_filters)
  except TypeError:
    raise ValueError(f"num_filters must be an integer >= 1 or a sequence of "
                     f"num_scales={num_scales} of them, got "
                     f"{num_filters!r}") from None
  if len(widths) != num_scales:
    raise ValueError(f"num_filters has {len(widths)} widths but num_scales="
                     f"{num_scales}; give one per scale (finest first) or "
                     f"a single int (doubled per scale)")
  for w in widths:
    validation.check_positive_int("every num_filters entry", w)
  return tuple(int(w) for w in widths)

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
`x, log_q = dequantizer(levels, training=..., seed=...)`, `log_q` of shape
`[N]`. A new one is one subclass of `Dequantizer` plus one entry in
`DEQUANTIZERS`:

- 'uniform': `u ~ U[0, 1)`, `log q = 0` (the paper's).
- 'variational': Flow++'s learned `q(u | k)` (Ho et al., 2019, §3.1), a
  small conditional flow trained jointly with the model. Its bound is
  reported as `variational_bits_per_dim` (`metric_name`), never as plain
  `bits_per_dim`: the number is a different (tighter) bound.
"""

import math

import keras
import tensorflow as tf

from tfp_realnvp import networks
from tfp_realnvp import validation
from tfp_realnvp.bijectors import coupling

# Largest noise whose sum with any level 0..255 stays below the next level in
# float32 (the spacing of float32 at 255 is 2**-16): k + u < k + 1 exactly.
MAX_NOISE = 1.0 - 2.0 ** -15


class Dequantizer(keras.layers.Layer):
  """Base class: `call(levels, training, seed) -> (levels + u, log q(u | levels))`.

  `seed` (a stateless seed, shape `[2]`) chooses the inference-mode draw;
  `None` is `[self.seed, 0]`. `metric_name` is the name the model reports
  its bound under.
  """

  metric_name = "bits_per_dim"

  def call(self, levels, training=False, seed=None):
    raise NotImplementedError

  def dequantize(self, images, image_shape, check_values=True,
                 training=False):
    """`call` on `images` after the checks that they are integer levels
    `[N, *image_shape]` in 0..255 (float or uint8)."""
    levels = validation.check_levels(
        validation.check_images(images, image_shape, check_values,
                                allow_uint8=True), check_values)
    return self(levels, training=training)

  def _seed(self, seed):
    return tf.constant([self.seed, 0], tf.int64) if seed is None else seed


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

  def call(self, levels, training=False, seed=None):
    levels = tf.convert_to_tensor(levels, tf.float32)
    if training:
      u = tf.random.uniform(tf.shape(levels))
    else:
      u = tf.random.stateless_uniform(tf.shape(levels), seed=self._seed(seed))
    x = levels + tf.minimum(u, MAX_NOISE)
    return x, tf.zeros(tf.shape(levels)[:1])

  def get_config(self):
    config = super().get_config()
    config.update(seed=self.seed)
    return config


class _Conditioned:
  """An s/t network that also sees per-pixel context features: called as
  the coupling calls its network, on `concat(masked input, context)`."""

  def __init__(self, network, context):
    self.network = network
    self.context = context

  def __call__(self, h, training=False):
    return self.network(tf.concat([h, tf.cast(self.context, h.dtype)], -1),
                        training=training)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class VariationalDequantizer(Dequantizer):
  """Flow++ variational dequantization (Ho et al., 2019, §3.1).

  ```
    ε ~ N(0, I)                     (shape of the image)
    v = g_K ∘ … ∘ g_1(ε; k)         affine checkerboard couplings (eq. 4-9)
                                    whose s/t networks also see c(k)
    u = sigmoid(v) ∈ (0, 1)         x = k + u
    log q(u | k) = log N(ε) − Σ log|det ∂g_i| − Σ log sigmoid'(v)
  ```

  `c(k)` is a small convolutional network of the levels (scaled to
  [-1, 1]). The model trains `E_q[log p(k + u) − log q(u | k)]`, a lower
  bound of log P(k) that is tight when q matches the model's conditional
  density of `u` inside each bin (uniform noise is the special case q = 1).
  Everything is per image: `log_q` has shape `[N]`.

  A `u` that rounds to 1 in float32 (|v| > ~17, where `log q` is already
  penalised by `−log sigmoid'(v) > 17` nats per pixel) is clamped to
  `MAX_NOISE` so that `k + u` stays in `[k, k + 1)`.

  The defaults are small on purpose: every coupling runs at full
  resolution, and at (4, 8, 0) the dequantizer adds ~4K parameters and
  ~30% to a 0.42M-parameter MNIST model's step (4 couplings of width 16 with
  a residual block each: +33K and +70%; measured 2026-12-02, 2 CPU cores).

  Args:
    num_steps: couplings of the conditional flow (alternating parity).
    num_filters: width of their s/t networks and of the context network.
    num_blocks: residual blocks per s/t network (0: in and out conv only).
    seed: inference-mode draws are the stateless draws of this seed.
  """

  metric_name = "variational_bits_per_dim"

  def __init__(self, num_steps=4, num_filters=8, num_blocks=0, seed=0,
               **kwargs):
    super().__init__(**kwargs)
    for name, value, low in (("num_steps", num_steps, 1),
                             ("num_filters", num_filters, 1),
                             ("num_blocks", num_blocks, 0)):
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    self.num_steps = num_steps
    self.num_filters = num_filters
    self.num_blocks = num_blocks
    self.seed = int(seed)

  def build(self, input_shape):
    if len(input_shape) != 4:
      raise ValueError(f"VariationalDequantizer expects [N, H, W, C] levels, "
                       f"got shape {tuple(input_shape)}")
    h, w, c = (int(d) for d in input_shape[1:])
    f = self.num_filters
    self.context_convs = [
        networks.WeightNormConv2D(f, 3, name=f"context_conv{i}")
        for i in range(2)]
    self.context_convs[0].build((None, h, w, c))
    self.context_convs[1].build((None, h, w, f))
    kind = coupling.CHECKERBOARD
    in_channels = coupling.conditioner_input_channels(kind, c) + f
    self.step_networks = []
    for i in range(self.num_steps):
      net = networks.CouplingResNet(
          coupling.conditioner_output_channels(kind, c), num_filters=f,
          num_blocks=self.num_blocks, use_batch_norm=False,
          name=f"dequant_st_net_{i}")
      net.build((None, h, w, in_channels))
      self.step_networks.append(net)

  def context(self, levels):
    """Per-pixel features `c(k)` of the levels, `[N, H, W, num_filters]`."""
    h = tf.convert_to_tensor(levels, tf.float32) / 127.5 - 1.0
    for conv in self.context_convs:
      h = tf.nn.relu(conv(h))
    return h

  def transform(self, levels, eps):
    """`(v, log|det ∂v/∂ε|)` of the conditional flow (before the sigmoid)."""
    ctx = self.context(levels)
    v, log_det = eps, tf.zeros(tf.shape(eps)[:1])
    for i, net in enumerate(self.step_networks):
      bijector = coupling.AffineCoupling(
          _Conditioned(net, ctx), mask_type=coupling.CHECKERBOARD,
          parity=i % 2, name=f"dequant_coupling_{i}")
      new = bijector.forward(v)
      log_det += bijector.forward_log_det_jacobian(v, event_ndims=3)
      v = new
    return v, log_det

  def call(self, levels, training=False, seed=None):
    levels = tf.convert_to_tensor(levels, tf.float32)
    shape = tf.shape(levels)
    eps = (tf.random.normal(shape) if training else
           tf.random.stateless_normal(shape, seed=self._seed(seed)))
    v, log_det = self.transform(levels, eps)
    log_normal = -0.5 * tf.reduce_sum(tf.square(eps), [1, 2, 3]) - 0.5 * (
        math.log(2.0 * math.pi) * tf.cast(tf.reduce_prod(shape[1:]),
                                          tf.float32))
    # log sigmoid'(v) = log σ(v) + log σ(−v) = −softplus(−v) − softplus(v)
    log_sigmoid_grad = tf.reduce_sum(-tf.nn.softplus(-v) - tf.nn.softplus(v),
                                     [1, 2, 3])
    u = tf.minimum(tf.sigmoid(v), MAX_NOISE)
    return levels + u, log_normal - log_det - log_sigmoid_grad

  def get_config(self):
    config = super().get_config()
    config.update(num_steps=self.num_steps, num_filters=self.num_filters,
                  num_blocks=self.num_blocks, seed=self.seed)
    return config


# `dequantizer=` option of `RealNVP` -> class.
DEQUANTIZERS = {"uniform": UniformDequantizer,
                "variational": VariationalDequantizer}

"""`RealNVP`: the multi-scale Real NVP density model as a Keras 3 model.

Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR 2017.

```
 x ∈ [0,256)^(H×W×C)  (dequantized pixels)
   │ LogitPreprocess            logit(α + (1-2α)x/256)            §4.1
   ▼
 ┌ scale 1 ──────────────────────────────────────────────────────────────┐
 │ 3 × [AffineCoupling(checkerboard, parity 0,1,0) → BatchNormalization] │  eq. 9, 17
 │ Squeeze  (H, W, C) → (H/2, W/2, 4C)                                   │  fig. 3
 │ 3 × [AffineCoupling(channel, parity 0,1,0) → BatchNormalization]      │
 │ factor out: first 2C channels → z(1); last 2C continue                │  eq. 13-16
 └───────────────────────────────────────────────────────────────────────┘
   ▼  ... scales 2 .. L-1 alike ...
 ┌ scale L (last) ───────────────────────────────────────────────────────┐
 │ 4 × [AffineCoupling(checkerboard, parity 0,1,0,1) → BatchNorm]        │
 └───────────────────────────────────────────────────────────────────────┘
   ▼
 z = (z(1), ..., z(L)) ∈ R^D  ~  N(0, I)   or N(μ_y, σ_y²) for class y
```

`model.flow(training)` is that chain of TFP bijectors (`forward` = data ->
latent); `model.distribution(training)` is
`tfd.TransformedDistribution(base, tfb.Invert(flow))`, so `log_prob(x)` is
exact by the change of variables and `sample` is one inverse pass. All
trainable and moving state lives in Keras layers owned by this model; the
bijectors are rebuilt (cheaply) on each call with the right training flag.

Example:

```python
import tfp_realnvp
model = tfp_realnvp.RealNVP(image_shape=(8, 8, 1), num_scales=2,
                            num_res_blocks=1, num_filters=16)
model.compile(optimizer="adam")        # loss is -log_prob; bits/dim is shown
model.fit(images, epochs=2, batch_size=64)  # images: float32 in [0, 256)
print(model.bits_per_dim(images[:8]))
samples = model.sample(16, temperature=0.7, seed=(1, 2))
```
"""

import math

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import networks
from tfp_realnvp import prior
from tfp_realnvp import validation
from tfp_realnvp.bijectors import batch_norm
from tfp_realnvp.bijectors import coupling as coupling_lib
from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors import logit
from tfp_realnvp.bijectors import multiscale
from tfp_realnvp.bijectors import squeeze

tfb = tfp.bijectors
tfd = tfp.distributions

COUPLING_TYPES = ("affine", "additive")
MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class RealNVP(keras.Model):
  """Multi-scale Real NVP on images, trainable with `model.fit`.

  `call(x)` returns `log_prob(x)` in nats, shape `[N]`; the built-in loss is
  `-mean(log_prob) + L2 penalty`, and a `bits_per_dim` metric is reported
  next to it (`val_bits_per_dim` on validation data).

  Args:
    image_shape: `(H, W, C)`. H and W must be divisible by
      `2**(num_scales - 1)` and the last scale must keep at least 2×2 pixels.
    num_scales: number of scales; `1` is a single "last scale".
    num_res_blocks: residual blocks in every s/t network.
    num_filters: feature maps of the s/t networks. An int is the finest
      scale's width, doubled at each coarser scale; a sequence of
      `num_scales` ints gives each scale's width (finest first), e.g.
      `(16, 32, 56)`. Prefer multiples of 8, the vector width of oneDNN's and
      cuDNN's blocked layouts (off that width they run markedly slower; see
      the README's Performance section).
    coupling: 'affine' (Real NVP) or 'additive' (NICE, s ≡ 0).
    use_batch_norm: batch norm inside the s/t networks and a
      `BatchNormalization` bijector after every coupling (paper §3.7).
    num_classes: `None` for an unconditional model, or the number of classes
      of a class-conditional one (labels condition the base Gaussian).
    alpha: the logit preprocessing α (0.05 in the authors' code).
    bn_momentum: moving-average decay of every batch norm.
    bn_epsilon: variance epsilon of every batch norm (paper code: 1e-4).
    mixed_precision: `None` (float32 everywhere), `'mixed_float16'` or
      `'mixed_bfloat16'`: the s/t networks (where the FLOPs are) compute in
      half precision with float32 weights, while the bijector arithmetic,
      every log-det, batch-norm statistics, the prior and the loss stay in
      float32, so log_prob is still a float32 sum. `None` also follows a
      mixed global policy (`keras.config.set_dtype_policy`).
      `'mixed_float16'` makes `compile` wrap the optimizer in Keras'
      `LossScaleOptimizer`.
    synchronized_batch_norm: under a multi-replica `tf.distribute` strategy,
      every batch norm (flow bijectors and s/t networks) uses the statistics
      of the global batch, all-reduced across replicas, so training optimizes
      the same objective on 1 or N devices. `False`: per-replica statistics.
      No effect with one replica.
    use_weight_norm: weight-normalised convolutions in the s/t networks.
    log_scale_init: initial learned factor in `s = scale · tanh(raw)`; it is
      the initial bound on |s| per element.
    l2_reg: L2 penalty on the s/t network weights (paper: 5e-5).
    validate_inputs: check every input of every public method (and of
      `fit`/`evaluate`/`predict`): shape, dtype, the [0, 256] range and
      finiteness of images, finite latents, one label per example in
      [0, num_classes) (`tfp_realnvp.validation`; cheap graph asserts, and
      under `jit_compile` a check in the input pipeline). `False` keeps the
      static shape and dtype checks only.
  """

  def __init__(self, image_shape, num_scales=3, num_res_blocks=4,
               num_filters=32, coupling="affine", use_batch_norm=True,
               num_classes=None, alpha=0.05, bn_momentum=0.9, bn_epsilon=1e-4,
               use_weight_norm=True, log_scale_init=1.0, l2_reg=5e-5,
               validate_inputs=True, synchronized_batch_norm=True,
               mixed_precision=None, **kwargs):
    if mixed_precision is None:
      global_policy = keras.config.dtype_policy().name
      if global_policy in MIXED_PRECISION_POLICIES:
        mixed_precision = global_policy
    if mixed_precision not in (None,) + MIXED_PRECISION_POLICIES:
      raise ValueError(f"mixed_precision must be None or one of "
                       f"{MIXED_PRECISION_POLICIES}, got {mixed_precision!r}")
    # The model itself (and so the flow) stays float32 under any policy.
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    self.mixed_precision = mixed_precision
    image_shape = _validate_image_shape(image_shape)
    _validate_positive_int("num_scales", num_scales)
    _validate_positive_int("num_res_blocks", num_res_blocks, allow_zero=True)
    if coupling not in COUPLING_TYPES:
      raise ValueError(f"coupling must be one of {COUPLING_TYPES}, got "
                       f"{coupling!r}")
    if num_classes is not None:
      _validate_positive_int("num_classes", num_classes)
      if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 for a class-conditional "
                         f"model (or None), got {num_classes}")
    if not 0.0 < alpha < 0.5:
      raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    if l2_reg < 0:
      raise ValueError(f"l2_reg must be >= 0, got {l2_reg}")
    scale_filters = _scale_filters(num_filters, num_scales)
    height, width, channels = image_shape
    factor = 2 ** (num_scales - 1)
    if height % factor or width % factor:
      raise ValueError(
          f"image height and width must be divisible by 2**(num_scales-1) = "
          f"{factor} (one squeeze per scale but the last); got image_shape "
          f"{image_shape} with num_scales={num_scales}")
    if height // factor < 2 or width // factor < 2:
      raise ValueError(
          f"the last scale would be {height // factor}x{width // factor} "
          f"pixels; a checkerboard coupling needs at least 2x2. Use fewer "
          f"scales than {num_scales} for image_shape {image_shape}")

    self.image_shape = image_shape
    self.num_scales = int(num_scales)
    self.num_res_blocks = int(num_res_blocks)
    # As given (config form): one int, or the list of per-scale widths.
    self.num_filters = (int(num_filters)
                        if isinstance(num_filters, (int, np.integer))
                        else list(scale_filters))
    self.scale_filters = scale_filters
    self.coupling = coupling
    self.use_batch_norm = bool(use_batch_norm)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.alpha = float(alpha)
    self.bn_momentum = float(bn_momentum)
    self.bn_epsilon = float(bn_epsilon)
    self.synchronized_batch_norm = bool(synchronized_batch_norm)
    self.use_weight_norm = bool(use_weight_norm)
    self.log_scale_init = float(log_scale_init)
    self.l2_reg = float(l2_reg)
    self.validate_inputs = bool(validate_inputs)
    self.event_size = height * width * channels

    # The plan: one entry per bijector in data -> latent order. Layers are
    # created and built here, so every weight exists after the constructor.
    self._plan = []
    self.coupling_networks = []
    self.batch_norm_states = []
    latent_shapes = []
    shape = image_shape
    for scale in range(self.num_scales):
      last = scale == self.num_scales - 1
      filters = self.scale_filters[scale]
      for k in range(4 if last else 3):
        self._add_coupling(scale, coupling_lib.CHECKERBOARD, k % 2, shape,
                           filters)
      if last:
        latent_shapes.append(shape)
        break
      self._plan.append(("squeeze", scale, shape))
      shape = squeeze.squeeze_event_shape(shape)
      for k in range(3):
        self._add_coupling(scale, coupling_lib.CHANNEL, k % 2, shape, filters)
      self._plan.append(("factor_out", scale, shape))
      factored = (shape[0], shape[1], shape[2] // 2)
      latent_shapes.append(factored)
      shape = (shape[0], shape[1], shape[2] - shape[2] // 2)
    self.latent_shapes = tuple(tuple(s) for s in latent_shapes)

    self.prior = (prior.ClassConditionalPrior(self.num_classes,
                                              self.event_size, dtype="float32",
                                              name="prior")
                  if self.num_classes else None)
    if self.prior is not None:
      self.prior.build()
    self.bits_per_dim_tracker = keras.metrics.Mean(name="bits_per_dim")
    self.built = True

  def _add_coupling(self, scale, mask_type, parity, shape, filters):
    height, width, channels = shape
    in_channels = coupling_lib.conditioner_input_channels(mask_type, channels)
    out_channels = coupling_lib.conditioner_output_channels(mask_type,
                                                            channels)
    index = len(self.coupling_networks)
    net = networks.CouplingResNet(
        out_channels, num_filters=filters, num_blocks=self.num_res_blocks,
        affine=self.coupling == "affine", use_batch_norm=self.use_batch_norm,
        use_weight_norm=self.use_weight_norm, bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon, log_scale_init=self.log_scale_init,
        l2=self.l2_reg, synchronized_batch_norm=self.synchronized_batch_norm,
        dtype=self.mixed_precision or "float32", name=f"st_net_{index}")
    net.build((None, height, width, in_channels))
    self.coupling_networks.append(net)
    bn_index = None
    if self.use_batch_norm:
      state = batch_norm.BatchNormState(
          self.bn_momentum, self.bn_epsilon,
          synchronized=self.synchronized_batch_norm, dtype="float32",
          name=f"flow_bn_{index}")
      state.build((None, height, width, channels))
      bn_index = len(self.batch_norm_states)
      self.batch_norm_states.append(state)
    self._plan.append(("coupling", scale, shape, mask_type, parity, index,
                       bn_index))

  # --- the bijector chain ----------------------------------------------------

  def flow(self, training=False):
    """The whole flow as one TFP bijector, `forward`: images -> flat latent.

    Maps `[..., H, W, C]` dequantized pixels to `[..., D]`; the Keras layers
    run in training mode (batch statistics, moving-average updates) when
    `training` is True, in inference mode otherwise.
    """
    training = bool(training)
    preprocess = logit.LogitPreprocess(alpha=self.alpha)
    return cache.Chain([self._segment(0, training), preprocess],
                            name="real_nvp_flow")

  def _segment(self, start, training):
    """Bijector for the plan from `start` on, ending in the flat latent."""
    steps = []  # in data -> latent order
    for i in range(start, len(self._plan)):
      entry = self._plan[i]
      kind = entry[0]
      if kind == "coupling":
        _, scale, _, mask_type, parity, index, bn_index = entry
        steps.append(coupling_lib.AffineCoupling(
            self.coupling_networks[index], mask_type=mask_type, parity=parity,
            additive=self.coupling == "additive", training=training,
            name=f"coupling_{index}_s{scale}_{mask_type}{parity}"))
        if bn_index is not None:
          steps.append(batch_norm.BatchNormalization(
              self.batch_norm_states[bn_index], training=training,
              name=f"batch_norm_{bn_index}_s{scale}"))
      elif kind == "squeeze":
        steps.append(squeeze.Squeeze(entry[2], name=f"squeeze_s{entry[1]}"))
      elif kind == "factor_out":
        rest = self._segment(i + 1, training)
        steps.append(multiscale.factor_out(entry[2], rest,
                                           name=f"factor_out_s{entry[1]}"))
        return cache.Chain(steps[::-1],
                                name=f"scale_{self._plan[start][1]}")
    steps.append(multiscale.flatten(self.latent_shapes[-1]))
    return cache.Chain(steps[::-1], name=f"scale_{self._plan[start][1]}")

  def base_distribution(self, labels=None, temperature=1.0):
    """The Gaussian over the flat latent `[D]` (batch `[N]` if conditional)."""
    if self.prior is None:
      if labels is not None:
        raise ValueError("labels were given to an unconditional model "
                         "(num_classes=None)")
      loc = tf.zeros([self.event_size])
      log_scale = tf.zeros([self.event_size])
    else:
      labels = self._check_labels(labels)
      loc, log_scale = self.prior(labels)
    temperature = validation.check_temperature(temperature)
    log_scale = log_scale + tf.math.log(tf.cast(temperature, log_scale.dtype))
    return prior.gaussian(loc, log_scale)

  def distribution(self, training=False, labels=None):
    """`tfd.TransformedDistribution` over images, event shape `image_shape`.

    `log_prob(x)` is the exact density of dequantized pixels `x ∈ [0, 256)`
    (nats); `sample(n)` runs the flow's inverse once. For a class-conditional
    model pass `labels` (int `[N]`): the distribution then has batch `[N]`.
    """
    return cache.TransformedDistribution(
        distribution=self.base_distribution(labels),
        bijector=cache.Invert(self.flow(training)),
        name="RealNVP")

  # --- Keras entry points -----------------------------------------------------

  def call(self, inputs, training=None):
    """Returns `log_prob` (nats, `[N]`) of `x` or of `(x, labels)`."""
    images, labels = self._unpack(inputs)
    return self.log_prob(images, labels=labels, training=bool(training))

  def compile(self, optimizer="adam", **kwargs):
    """`keras.Model.compile`; the loss is built in (`-log_prob` + L2).

    Every weight exists from the constructor, so the optimizer's slots are
    created here too: `fit` then traces its train step once instead of
    twice (a `tf.function` that creates variables is traced again).
    """
    if kwargs.get("loss") is not None:
      raise ValueError("RealNVP minimises -log_prob (+ L2) itself; do not "
                       "pass a loss to compile()")
    if self.mixed_precision == "mixed_float16":
      # float16 gradients underflow without loss scaling (Keras only adds it
      # itself when the *model's* policy is mixed; ours stays float32).
      optimizer = keras.optimizers.get(optimizer)
      if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    super().compile(optimizer=optimizer, **kwargs)
    if self.optimizer is not None and not self.optimizer.built:
      self.optimizer.build(self.trainable_variables)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """Mean negative log-likelihood in nats per image, plus the L2 penalty."""
    del x, y, training
    nll = -y_pred
    if sample_weight is not None:
      weights = tf.cast(tf.reshape(sample_weight, [-1]), nll.dtype)
      loss = tf.math.divide_no_nan(tf.reduce_sum(nll * weights),
                                   tf.reduce_sum(weights))
    else:
      loss = tf.reduce_mean(nll)
    for penalty in self.losses:
      loss = loss + tf.cast(tf.reduce_sum(penalty), loss.dtype)
    # Under tf.distribute each replica returns its share of the global mean
    # (Keras sums replica gradients and multiplies the reported loss back).
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas > 1:
      loss = loss * (1.0 / replicas)
    return loss

  def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
    """`keras.Model.fit`; under XLA the input values are checked in the
    input pipeline (see `_xla_safe`)."""
    return super().fit(self._xla_safe(x), y, *args,
                       validation_data=self._xla_safe(validation_data),
                       **kwargs)

  def evaluate(self, x=None, *args, **kwargs):
    """`keras.Model.evaluate`, input values checked under XLA too."""
    return super().evaluate(self._xla_safe(x), *args, **kwargs)

  def predict(self, x, *args, **kwargs):
    """`keras.Model.predict`, input values checked under XLA too."""
    return super().predict(self._xla_safe(x), *args, **kwargs)

  def _xla_safe(self, data):
    """Input value checks that survive `jit_compile=True`.

    XLA drops the graph asserts of `validation`, so when the model is
    compiled with XLA (`compile(jit_compile=True)`, or Keras' `auto` on
    GPU/TPU) NaN, inf, out-of-range pixels and out-of-range labels are
    checked outside the compiled step, with the same messages: arrays and
    tensors eagerly once, a `tf.data.Dataset` by a map step. (Python
    generators and `PyDataset`s are checked by the graph path only, so not
    under XLA.) Shapes and dtypes are checked at trace time either way.
    """
    if data is None or not self.validate_inputs or not getattr(
        self, "jit_compile", False):
      return data
    if isinstance(data, tf.data.Dataset):
      if isinstance(data.element_spec, tuple):
        return data.map(lambda *parts: tuple(
            tf.nest.map_structure(self._check_component, parts)))
      return data.map(
          lambda element: tf.nest.map_structure(self._check_component,
                                                element))
    if isinstance(data, (np.ndarray, tf.Tensor, tuple, list, dict)):
      # Traced, so the message is worded as on the graph path.
      tf.function(lambda d: tf.nest.map_structure(self._check_component, d),
                  autograph=False)(data)
    return data

  def _check_component(self, value):
    """Value checks of one input component: images, or labels."""
    if not isinstance(value, (np.ndarray, tf.Tensor)):
      return value
    value = tf.convert_to_tensor(value)
    if value.dtype.is_floating and value.shape.rank == 4:
      value = validation.check_images(value, self.image_shape)
    elif (self.prior is not None and value.dtype.is_integer and
          value.shape.rank == 1):
      value = validation.check_labels(value, self.num_classes)
    return value

  def train_step(self, data):
    return _reducible_logs(super().train_step(data))

  def test_step(self, data):
    return _reducible_logs(super().test_step(data))

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    self.bits_per_dim_tracker.update_state(self._nats_to_bits_per_dim(-y_pred))
    return super().compute_metrics(x, y, y_pred, sample_weight)

  def get_config(self):
    return {
        "name": self.name, "trainable": self.trainable,
        "image_shape": list(self.image_shape), "num_scales": self.num_scales,
        "num_res_blocks": self.num_res_blocks,
        "num_filters": self.num_filters, "coupling": self.coupling,
        "use_batch_norm": self.use_batch_norm,
        "num_classes": self.num_classes, "alpha": self.alpha,
        "bn_momentum": self.bn_momentum, "bn_epsilon": self.bn_epsilon,
        "use_weight_norm": self.use_weight_norm,
        "log_scale_init": self.log_scale_init, "l2_reg": self.l2_reg,
        "validate_inputs": self.validate_inputs,
        "synchronized_batch_norm": self.synchronized_batch_norm,
        "mixed_precision": self.mixed_precision,
    }

  # --- public API ---------------------------------------------------------------

  def log_prob(self, images, labels=None, training=False):
    """Exact log-density (nats) of dequantized pixels, shape `[N]`.

    A class-conditional model needs one label per image (int `[N]`); a
    different count is an error here as in `encode`, `decode`, `sample` and
    serving (`distribution(labels=...)` itself broadcasts as any TFP
    distribution does).
    """
    images = self._check_images(images)
    if self.prior is not None:
      labels = self._check_labels(labels, tf.shape(images)[0])
    return self.distribution(training=training, labels=labels).log_prob(images)

  def bits_per_dim(self, inputs, training=False):
    """`-log_prob / (H·W·C·ln 2)` per image for `x` or `(x, labels)`."""
    images, labels = self._unpack(inputs)
    return self._nats_to_bits_per_dim(
        -self.log_prob(images, labels=labels, training=training))

  def encode(self, images, labels=None):
    """Images `[N, H, W, C]` -> latents `[N, D]` (inference mode).

    Unconditional: the flow output `z ~ N(0, I)`. Class-conditional: the
    standardized latent `(z - μ_y) / σ_y ~ N(0, I)` under class `y`, so
    `decode(encode(x, y), y) == x` and `decode(T·ε, y)` samples class `y`.
    """
    images = self._check_images(images)
    z = self.flow(training=False).forward(images)
    if self.prior is None:
      if labels is not None:
        raise ValueError("labels were given to an unconditional model")
      return z
    loc, log_scale = self.prior(self._check_labels(labels, tf.shape(z)[0]))
    return (z - loc) * tf.exp(-log_scale)

  def decode(self, latents, labels=None):
    """Latents `[N, D]` -> images `[N, H, W, C]`: the inverse of `encode`."""
    z = self._check_latents(latents)
    if self.prior is not None:
      loc, log_scale = self.prior(self._check_labels(labels, tf.shape(z)[0]))
      z = z * tf.exp(log_scale) + loc
    elif labels is not None:
      raise ValueError("labels were given to an unconditional model")
    return self.flow(training=False).inverse(z)

  def sample(self, num_samples, temperature=1.0, seed=None, labels=None,
             clip=True):
    """Draws `[num_samples, H, W, C]` images in pixel space.

    Args:
      num_samples: number of images.
      temperature: scales the std of the base Gaussian (paper fig. 6 uses
        reduced temperatures for sharper samples); finite and > 0. A Python
        number is checked at once, a tensor (scalar or `[num_samples]`, e.g.
        inside a `tf.function`) by a graph assert.
      seed: `None` (stateful RNG) or a stateless seed such as `(1, 2)`: the
        same seed gives the same images.
      labels: int `[num_samples]` classes (class-conditional models only).
      clip: clip to the half-open pixel range `[0, 256)` (`clip_pixels`),
        so `floor` gives a valid uint8. `False` returns the flow's exact
        image of the latent, which lies in `(-α·256/(1-2α),
        256 + α·256/(1-2α))`: count finiteness and range on it.
    """
    _validate_positive_int("num_samples", num_samples)
    temperature = validation.check_temperature(temperature)
    if temperature.shape.rank:  # one temperature per sample
      temperature = validation.check_rows(temperature, num_samples,
                                          "temperature")[:, None]
    shape = [int(num_samples), self.event_size]
    if seed is None:
      eps = tf.random.normal(shape)
    else:
      eps = tf.random.stateless_normal(shape, seed=seed)
    images = self.decode(eps * temperature, labels=labels)
    return self.clip_pixels(images) if clip else images

  @staticmethod
  def clip_pixels(images):
    """Clips to the half-open pixel range `[0, 256)` (the largest float32
    below 256 at the top), the range of dequantized pixels `k + u`."""
    return tf.clip_by_value(images, 0.0,
                            np.nextafter(256.0, 0.0, dtype=np.float32))

  def interpolate(self, images, steps=8, labels=None):
    """Latent manifold of four images (paper eq. 19), `[steps, steps, H, W, C]`.

    `z(φ, φ') = cos φ (cos φ' z1 + sin φ' z2) + sin φ (cos φ' z3 + sin φ' z4)`
    for φ, φ' on an even grid over `[0, π/2]`; corners are the four inputs.
    Class-conditional models take one class `labels` (a scalar) for all four.
    """
    _validate_positive_int("steps", steps)
    images = self._check_images(images)
    if images.shape[0] != 4:
      raise ValueError(f"interpolate needs exactly 4 images, got shape "
                       f"{images.shape}")
    if self.prior is not None:
      if labels is None or np.ndim(labels) != 0:
        raise ValueError(
            f"interpolate on a class-conditional model needs labels=k, one "
            f"class (an integer in [0, {self.num_classes})) for all four "
            f"images; got labels={labels!r}")
      labels = tf.fill([4], self._check_labels(tf.reshape(labels, [1]))[0])
    elif labels is not None:
      raise ValueError("labels were given to an unconditional model "
                       "(num_classes=None)")
    z1, z2, z3, z4 = tf.unstack(self.encode(images, labels))
    angles = tf.linspace(0.0, math.pi / 2, steps)
    phi = angles[:, None, None]
    phi2 = angles[None, :, None]
    grid = (tf.cos(phi) * (tf.cos(phi2) * z1 + tf.sin(phi2) * z2) +
            tf.sin(phi) * (tf.cos(phi2) * z3 + tf.sin(phi2) * z4))
    flat = tf.reshape(grid, [steps * steps, self.event_size])
    grid_labels = None if self.prior is None else tf.fill(
        [steps * steps], labels[0])
    out = self.decode(flat, grid_labels)
    return tf.reshape(out, [steps, steps] + list(self.image_shape))

  def split_latent(self, latents):
    """Flat latents `[N, D]` -> per-scale parts `[N, h_i, w_i, c_i]`."""
    return multiscale.split_latent(latents, self.latent_shapes)

  def merge_latent(self, parts):
    """Per-scale parts -> flat latents `[N, D]` (inverse of split_latent)."""
    return multiscale.merge_latent(parts)

  # --- input checking -----------------------------------------------------------

  def _nats_to_bits_per_dim(self, nats):
    return nats / (self.event_size * math.log(2.0))

  def _unpack(self, inputs):
    if isinstance(inputs, (tuple, list)):
      shape = ", ".join(map(str, self.image_shape))
      if self.prior is None:
        raise ValueError(
            f"this model is unconditional (num_classes=None): pass images "
            f"as one tensor of shape [N, {shape}]; got a "
            f"{type(inputs).__name__} of {len(inputs)} elements (a list of "
            f"images? stack them with np.stack; (images, labels) pairs are "
            f"for class-conditional models)")
      if len(inputs) != 2:
        raise ValueError(f"expected (images, labels) for this class-"
                         f"conditional model, got a {type(inputs).__name__} "
                         f"of {len(inputs)} elements")
      return inputs[0], inputs[1]
    if self.prior is not None:
      raise ValueError(
          f"this model is class-conditional (num_classes={self.num_classes}) "
          f"and needs (images, labels) as its input. With a tf.data dataset "
          f"of (images, labels) pairs for fit, map it to "
          f"((images, labels),) so Keras passes both as x")
    return inputs, None

  def _check_images(self, images):
    return validation.check_images(images, self.image_shape,
                                   check_values=self.validate_inputs)

  def _check_latents(self, latents):
    return validation.check_latents(latents, self.event_size,
                                    check_values=self.validate_inputs)

  def _check_labels(self, labels, num=None):
    if self.prior is None:
      raise ValueError("labels were given to an unconditional model "
                       "(num_classes=None)")
    return validation.check_labels(labels, self.num_classes, rows=num,
                                   check_values=self.validate_inputs)


def _reducible_logs(logs):
  """Step logs Keras 3 can reduce under MultiWorkerMirroredStrategy.

  Keras 3 reduces each replica's step outputs there with
  `strategy.reduce(MEAN, value, axis=0)`, which fails for the scalar
  loss/metric values every model returns ("Invalid reduction dimension 0
  for input with 0 dimensions", tensorflow/tensorflow#72388). As `[1]`
  tensors they reduce to the mean over replicas, a scalar, which is what
  Keras means to report. Other strategies get the scalars unchanged.
  """
  strategy = tf.distribute.get_strategy()
  multi_worker = (
      isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and
      strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access
  if not multi_worker:
    return logs
  return {k: tf.reshape(v, [1]) for k, v in logs.items()}


def _validate_image_shape(image_shape):
  try:
    dims = tuple(int(d) for d in image_shape)
  except (TypeError, ValueError):
    raise ValueError(f"image_shape must be (height, width, channels), got "
                     f"{image_shape!r}") from None
  if len(dims) != 3 or min(dims) < 1:
    raise ValueError(f"image_shape must be three positive integers (height, "
                     f"width, channels), got {image_shape!r}")
  return dims


def _scale_filters(num_filters, num_scales):
  """Per-scale s/t-network widths (finest first) from an int or a list."""
  if isinstance(num_filters, (int, np.integer)) and not isinstance(
      num_filters, bool):
    _validate_positive_int("num_filters", num_filters)
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
    _validate_positive_int("every num_filters entry", w)
  return tuple(int(w) for w in widths)


def _validate_positive_int(name, value, allow_zero=False):
  lowest = 0 if allow_zero else 1
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
      value < lowest:
    raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")

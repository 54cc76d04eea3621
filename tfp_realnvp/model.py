"""`RealNVP`: the multi-scale Real NVP density model as a Keras 3 model.

Dinh et al., ICLR 2017. The architecture is the bijector
`bijectors.MultiScaleRealNVP` (schematic there); this model owns its Keras
layers, builds it per call with the training flag, adds the Keras entry
points and the density API. Every other concern is a module of its own,
reached through a one-line method here: `options` (checks), `flow_layers`
(building), `ema`, `actnorm_init`, `estimators`, `scores`, `validation`
and `_keras_glue` (loss, XLA-safe checks, multi-worker logs).

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

from tfp_realnvp import _keras_glue
from tfp_realnvp import actnorm_init
from tfp_realnvp import ema as ema_lib
from tfp_realnvp import estimators
from tfp_realnvp import flow_layers
from tfp_realnvp import interpolation
from tfp_realnvp import options as options_lib
from tfp_realnvp import scores as scores_lib
from tfp_realnvp import validation
from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors import logit
from tfp_realnvp.bijectors import multiscale
from tfp_realnvp.bijectors import real_nvp_flow
from tfp_realnvp.options import (  # noqa: F401  (public here since 0.1)
    COUPLING_TYPES, MIXED_PRECISION_POLICIES, PERMUTATIONS)


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class RealNVP(_keras_glue.CheckedStepsMixin, keras.Model):
  __doc__ = """Multi-scale Real NVP on images, trainable with `model.fit`.

  `call(x)` returns `log_prob(x)` in nats, shape `[N]`; the built-in loss is
  `-mean(log_prob) + L2 penalty`, and a `bits_per_dim` metric is reported
  next to it (`val_bits_per_dim` on validation data).
""" + options_lib.ARGS_DOC

  def __init__(self, image_shape, num_scales=3, num_res_blocks=4,
               num_filters=32, coupling="affine", use_batch_norm=True,
               num_classes=None, alpha=0.05, bn_momentum=0.9, bn_epsilon=1e-4,
               use_weight_norm=True, log_scale_init=1.0, l2_reg=5e-5,
               validate_inputs=True, synchronized_batch_norm=True,
               mixed_precision=None, checkerboard="masked", prior=None,
               dequantizer=None, ema_decay=None, bn_lag=0.0, actnorm=False,
               permutation="none", made_hidden_units=(512, 512),
               spline_bins=8, spline_bound=3.0, **kwargs):
    given = {k: v for k, v in locals().items() if k in options_lib.DEFAULTS}
    kwargs.setdefault("dtype", "float32")  # the flow stays float32
    super().__init__(**kwargs)
    for key, value in options_lib.resolve(image_shape, **given).items():
      setattr(self, key, value)
    # Every layer is created and built here: all weights exist after this.
    steps = real_nvp_flow.plan(self.image_shape, self.num_scales,
                               self.checkerboard, self.permutation)
    self.latent_shapes = real_nvp_flow.latent_shapes(steps)
    flow_layers.attach(self, flow_layers.build(self, steps))
    self._use_ema = self.ema_decay is not None
    self._averages = ema_lib.attach_averages(self, steps)
    self.bits_per_dim_name = (self.dequantizer.metric_name if self.dequantizer
                              else "bits_per_dim")
    self.bits_per_dim_tracker = keras.metrics.Mean(name=self.bits_per_dim_name)
    # The typicality reference of `score` (set by `fit`; saved, exported).
    self.score_statistics = scores_lib.ScoreStatistics(
        name="score_statistics")
    self.built = True

  def call(self, inputs, training=None):
    """`log_prob` (nats, `[N]`) of `x` or `(x, labels)`; with a dequantizer,
    `x` holds integer levels and this is the dequantization bound."""
    images, labels = validation.unpack_inputs(inputs, self.image_shape,
                                              self.num_classes)
    if self.dequantizer is None:
      return self.log_prob(images, labels=labels, training=bool(training))
    x, log_q = self.flow_layers(training).dequantizer.dequantize(
        images, self.image_shape, self.validate_inputs, bool(training))
    return self.log_prob(x, labels=labels, training=bool(training)) - log_q

  def compile(self, optimizer="adam", **kwargs):
    """`keras.Model.compile` with the built-in loss (`-log_prob` + L2); builds
    the optimizer's slots, so `fit` traces its train step once."""
    if kwargs.get("loss") is not None:
      raise ValueError("RealNVP minimises -log_prob (+ L2) itself; do not "
                       "pass a loss to compile()")
    super().compile(optimizer=_keras_glue.loss_scaled(
        _keras_glue.named_optimizer(optimizer), self.mixed_precision),
                    **kwargs)
    if self.optimizer is not None and not self.optimizer.built:
      self.optimizer.build(self.trainable_variables)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """Mean negative log-likelihood in nats per image, plus the L2 penalty."""
    return _keras_glue.nll_loss(y_pred, sample_weight, self.losses)

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    self.bits_per_dim_tracker.update_state(self.to_bits_per_dim(y_pred))
    return super().compute_metrics(x, y, y_pred, sample_weight)

  def fit(self, x=None, *args, callbacks=None, score_statistics=True,
          **kwargs):
    """`keras.Model.fit`, first initialising pending actnorms from the first
    batch (`actnorm_init.before_fit`), with the weight averages updated after
    every step (`ema.callbacks`), and at the end, with `score_statistics`,
    the typicality reference computed on `x` (`scores.after_fit`)."""
    actnorm_init.before_fit(self, x, kwargs.get("batch_size"))
    callbacks = list(callbacks or []) + ema_lib.callbacks(self)
    history = super().fit(x, *args, callbacks=callbacks, **kwargs)
    if score_statistics:
      scores_lib.after_fit(self, x, kwargs.get("batch_size"),
                       kwargs.get("steps_per_epoch"))
    return history

  def count_params(self):
    """Parameters of the density model (not EMA copy, score statistics)."""
    left_out = {id(v) for v in self.score_statistics.weights + (
        self._averages.averaged_variables() if self._averages else [])}
    return int(sum(np.prod(v.shape) for v in self.weights
                   if id(v) not in left_out))

  @classmethod
  def from_config(cls, config):
    """A model from `get_config()` (`options.from_config`)."""
    return cls(**options_lib.from_config(config))

  def get_config(self):
    return options_lib.config_of(self)

  def flow_layers(self, training=False):
    """The `flow_layers.FlowLayers` a pass uses: the raw weights in
    training, the averages in inference when `use_ema`."""
    return flow_layers.of(self, ema=self._use_ema and not training)

  def flow(self, training=False):
    """The whole flow as one TFP bijector (logit, then `MultiScaleRealNVP`),
    `forward`: images `[..., H, W, C]` -> `[..., D]`; `training`: the layers'
    Keras mode (batch statistics, moving-average updates)."""
    layers = self.flow_layers(training)
    return real_nvp_flow.MultiScaleRealNVP(
        self.image_shape, self.num_scales, layers.networks,
        layers.batch_norm_states, logit.LogitPreprocess(alpha=self.alpha),
        coupling=self.coupling_transform, checkerboard=self.checkerboard,
        training=bool(training), actnorm_states=layers.actnorm_states,
        permutation=self.permutation, conv1x1_states=layers.conv1x1_states,
        split_networks=layers.prior.split_networks)

  def base_distribution(self, labels=None, temperature=1.0, training=False):
    """The prior over the flat latent `[D]` (batch `[N]` if conditional)."""
    return self.flow_layers(training).prior.distribution(
        self._check_labels(labels), validation.check_temperature(temperature))

  def distribution(self, training=False, labels=None):
    """`tfd.TransformedDistribution` over images (event `image_shape`):
    exact `log_prob` of dequantized pixels, `sample` in one inverse pass;
    batch `[N]` for a conditional model's `labels` (int `[N]`)."""
    return cache.TransformedDistribution(
        distribution=self.base_distribution(labels, training=training),
        bijector=cache.Invert(self.flow(training)), name="RealNVP")

  def log_prob(self, images, labels=None, training=False):
    """Exact log-density (nats) of dequantized pixels, shape `[N]`; one
    label per image for a class-conditional model."""
    images = validation.check_images(images, self.image_shape,
                                     check_values=self.validate_inputs)
    labels = self._check_labels(labels, tf.shape(images)[0])
    return self.distribution(training=training, labels=labels).log_prob(images)

  def to_bits_per_dim(self, log_prob):
    """`-log_prob / (H·W·C·ln 2)`: nats per image -> bits per dimension."""
    return -log_prob / (self.event_size * math.log(2.0))

  def bits_per_dim(self, inputs, training=False):
    """`-log_prob / (H·W·C·ln 2)` per image for `x` or `(x, labels)`."""
    images, labels = validation.unpack_inputs(inputs, self.image_shape,
                                              self.num_classes)
    return self.to_bits_per_dim(
        self.log_prob(images, labels=labels, training=training))

  def encode(self, images, labels=None):
    """Images `[N, H, W, C]` -> latents `[N, D]` (inference mode), standardized
    by the prior: `ε ~ N(0, I)` under class `y` for a conditional model, so
    `decode(encode(x, y), y) == x` and `decode(T·ε, y)` samples class `y`."""
    images = validation.check_images(images, self.image_shape,
                                     check_values=self.validate_inputs)
    labels = self._check_labels(labels, tf.shape(images)[0])
    return self.flow_layers().prior.standardize(
        self.flow(training=False).forward(images), labels)

  def decode(self, latents, labels=None):
    """Latents `[N, D]` -> images `[N, H, W, C]`: the inverse of `encode`."""
    z = validation.check_latents(latents, self.event_size,
                                 check_values=self.validate_inputs)
    z = self.flow_layers().prior.unstandardize(
        z, self._check_labels(labels, tf.shape(z)[0]))
    return self.flow(training=False).inverse(z)

  def sample(self, num_samples, temperature=1.0, seed=None, labels=None,
             clip=True):
    """Draws `[num_samples, H, W, C]` images in pixel space.

    `temperature` scales the prior's std (paper fig. 6): finite, > 0, a
    number or a tensor (scalar or `[num_samples]`). `seed`: `None` (stateful
    RNG) or a stateless seed such as `(1, 2)`. `labels`: int `[num_samples]`
    (class-conditional models). `clip=False` returns the flow's exact image
    of the latent, in `(-α·256/(1-2α), 256 + α·256/(1-2α))`, else it is
    clipped to `[0, 256)` (`clip_pixels`).
    """
    validation.check_positive_int("num_samples", num_samples)
    temperature = validation.check_sample_temperature(temperature,
                                                      num_samples)
    shape = [int(num_samples), self.event_size]
    eps = (tf.random.normal(shape) if seed is None else
           tf.random.stateless_normal(shape, seed=seed))
    images = self.decode(eps * temperature, labels=labels)
    return self.clip_pixels(images) if clip else images

  @staticmethod
  def clip_pixels(images):
    """Clips to `[0, 256)`, the range of dequantized pixels `k + u`."""
    return tf.clip_by_value(images, 0.0,
                            np.nextafter(256.0, 0.0, dtype=np.float32))

  def _check_labels(self, labels, rows=None):
    return validation.check_optional_labels(labels, self.num_classes, rows,
                                            self.validate_inputs)

  def interpolate(self, images, steps=8, labels=None):
    """Latent manifold of four images (eq. 19), `[steps, steps, H, W, C]`."""
    return interpolation.interpolate(self, images, steps, labels)

  def split_latent(self, latents):
    """Flat latents `[N, D]` -> per-scale parts `[N, h_i, w_i, c_i]`."""
    return multiscale.split_latent(latents, self.latent_shapes)

  def merge_latent(self, parts):
    """Per-scale parts -> flat latents `[N, D]` (inverse of split_latent)."""
    return multiscale.merge_latent(parts)

  def importance_weighted_log_prob(self, inputs, num_samples=None, seed=None):
    """`estimators.ImportanceWeighted(num_samples, seed)`: float64 `[N]`."""
    return estimators.ImportanceWeighted(num_samples, seed)(self, inputs)

  def importance_weighted_bits_per_dim(self, inputs, num_samples=None,
                                       seed=None):
    """`importance_weighted_log_prob` in bits/dim (float64 `[N]`)."""
    return self.to_bits_per_dim(
        self.importance_weighted_log_prob(inputs, num_samples, seed))

  def score(self, images, kind="bpd"):
    """Out-of-distribution score `kind` (`scores.SCORES`), float32 `[N]`."""
    return scores_lib.score(self, images, kind)

  def check_score_statistics(self):
    """A `ValueError` unless the reference is current (`scores`)."""
    scores_lib.check_reference(self)

  def compute_score_statistics(self, data, batch_size=None, steps=None):
    """Sets the typicality reference from `data` (`scores.compute_statistics`)."""
    return scores_lib.compute_statistics(self, data, batch_size, steps)

  def actnorm_init_pending(self):
    """True when the model has actnorms that are not initialised yet."""
    return actnorm_init.pending(self)

  def initialize_actnorm(self, inputs):
    """Glow's data-dependent init from one batch (`actnorm_init`)."""
    actnorm_init.initialize(self, inputs)

  def update_ema(self, decay):
    """One averaging step `ema ← decay·ema + (1 − decay)·w` (`ema`)."""
    self._averages.update(decay)

  @property
  def use_ema(self):
    """Inference uses the averaged weights (only with `ema_decay`)."""
    return self._use_ema

  @use_ema.setter
  def use_ema(self, value):
    if value and self.ema_decay is None:
      raise ValueError("use_ema=True needs a model built with ema_decay")
    self._use_ema = bool(value)
    # Keras' traced evaluate/predict read the layers chosen at trace time.
    self.test_function = self.predict_function = None

"""`RealNVP`: the multi-scale Real NVP density model as a Keras 3 model.

Dinh et al., ICLR 2017. The architecture is the bijector
`bijectors.MultiScaleRealNVP` (schematic there); this model owns its Keras
layers, builds it per call with the training flag, adds the Keras entry
points.

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

import collections
import math
import warnings

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import _keras_glue
from tfp_realnvp import dequantization
from tfp_realnvp import interpolation
from tfp_realnvp import networks
from tfp_realnvp import prior as prior_lib
from tfp_realnvp import scores as scores_lib
from tfp_realnvp import validation
from tfp_realnvp.bijectors import actnorm as actnorm_lib
from tfp_realnvp.bijectors import batch_norm
from tfp_realnvp.bijectors import cache
from tfp_realnvp.bijectors import logit
from tfp_realnvp.bijectors import multiscale
from tfp_realnvp.bijectors import permutation as permutation_lib
from tfp_realnvp.bijectors import real_nvp_flow

COUPLING_TYPES = validation.COUPLING_TYPES
MIXED_PRECISION_POLICIES = validation.MIXED_PRECISION_POLICIES
PERMUTATIONS = permutation_lib.PERMUTATIONS


class FlowLayers(collections.namedtuple(
    "FlowLayers", ["networks", "batch_norm_states", "actnorm_states",
                   "conv1x1_states", "prior", "dequantizer"])):
  """The Keras layers of one copy of the model (raw or EMA)."""

  def all(self):
    """Every layer, in a fixed order (`None`s left out)."""
    return [layer for layer in (
        list(self.networks) + list(self.batch_norm_states) +
        list(self.actnorm_states) + list(self.conv1x1_states) +
        [self.prior, self.dequantizer]) if layer is not None]


class _EMAUpdate(keras.callbacks.Callback):
  """Updates `RealNVP`'s weight averages after every training step.

  Runs outside the train step (in cross-replica context under
  `tf.distribute`, where assigning mirrored variables is allowed), one
  compiled update per call; with `steps_per_execution = k` one call covers
  `k` steps and the decay is raised to the number of steps done.
  """

  def __init__(self):
    super().__init__()
    self._update = None
    self._last = None

  def on_train_begin(self, logs=None):
    self._last = int(self.model.optimizer.iterations.numpy())
    if self._update is None:
      model = self.model

      @tf.function
      def update(t, steps):
        d = tf.minimum(model.ema_decay, (1.0 + t) / (10.0 + t)) ** steps
        model.update_ema(d)
      self._update = update

  def on_train_batch_end(self, batch, logs=None):
    now = int(self.model.optimizer.iterations.numpy())
    if now > self._last:
      self._update(tf.constant(float(now), tf.float32),
                   tf.constant(float(now - self._last), tf.float32))
    self._last = now


def _first_batch(x, batch_size=None):
  """The first batch `fit` will see of `x` (for actnorm's initialisation):
  a `tf.data.Dataset`'s first element's inputs, or the first `batch_size`
  (Keras' default 32) rows of arrays."""
  if isinstance(x, tf.data.Dataset):
    element = next(iter(x))
    inputs, _, _ = keras.utils.unpack_x_y_sample_weight(element)
    return inputs
  if isinstance(x, (np.ndarray, tf.Tensor)):
    return x[:batch_size or 32]
  if isinstance(x, (tuple, list)) and x and all(
      isinstance(part, (np.ndarray, tf.Tensor)) for part in x):
    return tuple(part[:batch_size or 32] for part in x)
  raise ValueError(
      f"actnorm needs its data-dependent initialisation before training, "
      f"and fit() cannot take a first batch from {type(x).__name__}: call "
      f"model.initialize_actnorm(batch) with one batch (what call() takes) "
      f"before fit()")


def _image_batches(data, batch_size=None, steps=None):
  """Yields the image batches of what `fit`/`evaluate` take: a
  `tf.data.Dataset` (elements `x`, `(x,)`, `(x, y)` or `((x, labels),)`;
  `steps` batches, or all of a finite one) or arrays (`x` or
  `(x, labels)`, cut into `batch_size` rows, default 64)."""
  if isinstance(data, tf.data.Dataset):
    if steps is None and (data.cardinality().numpy() ==
                          tf.data.INFINITE_CARDINALITY):
      raise ValueError("the dataset is infinite (repeat()): pass steps, the "
                       "number of batches to use")
    for element in (data if steps is None else data.take(steps)):
      inputs, _, _ = keras.utils.unpack_x_y_sample_weight(element)
      yield inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    return
  if isinstance(data, (tuple, list)) and data and all(
      isinstance(part, (np.ndarray, tf.Tensor)) for part in data):
    data = data[0]
  if not isinstance(data, (np.ndarray, tf.Tensor)):
    raise ValueError(f"expected a tf.data.Dataset or arrays of images, got "
                     f"{type(data).__name__}")
  batch_size = batch_size or 64
  count = len(data) if steps is None else min(len(data), steps * batch_size)
  for start in range(0, count, batch_size):
    yield data[start:start + batch_size]


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class RealNVP(_keras_glue.CheckedStepsMixin, keras.Model):
  """Multi-scale Real NVP on images, trainable with `model.fit`.

  `call(x)` returns `log_prob(x)` in nats, shape `[N]`; the built-in loss is
  `-mean(log_prob) + L2 penalty`, and a `bits_per_dim` metric is reported
  next to it (`val_bits_per_dim` on validation data).

  Args:
    image_shape: `(H, W, C)`; H, W divisible by `2**(num_scales - 1)`, the
      last scale at least 2×2 pixels.
    num_scales: number of scales; `1` is a single "last scale".
    num_res_blocks: residual blocks in every s/t network.
    num_filters: an int (finest scale's width, doubled per scale) or one
      width per scale, finest first, e.g. `(16, 32, 56)`. Prefer multiples
      of 8 (oneDNN's and cuDNN's blocked layouts).
    coupling: 'affine' (Real NVP) or 'additive' (NICE, s ≡ 0).
    use_batch_norm: batch norm in the s/t networks and a `FlowBatchNorm`
      bijector after every coupling (§3.7).
    num_classes: `None`, or the classes of a class-conditional model.
    alpha: the logit preprocessing α (0.05 in the authors' code).
    bn_momentum, bn_epsilon: of every batch norm (paper code: ε = 1e-4).
    use_weight_norm: weight-normalised convolutions in the s/t networks.
    log_scale_init: initial bound on |s| per element (`s = scale·tanh(raw)`).
    l2_reg: L2 penalty on the s/t network weights (paper: 5e-5).
    validate_inputs: check every input (`tfp_realnvp.validation`; under
      `jit_compile` in the input pipeline). `False`: static checks only.
    synchronized_batch_norm: batch statistics of the global batch under a
      multi-replica `tf.distribute` strategy (same objective on 1 or N).
    mixed_precision: `None` (float32, or a mixed global policy),
      `'mixed_float16'` or `'mixed_bfloat16'`: s/t networks in half
      precision; bijector arithmetic, log-dets, statistics, prior and loss
      in float32. `'mixed_float16'` adds a `LossScaleOptimizer`.
    checkerboard: 'masked' (full resolution on `b⊙x`) or 'squeezed' (same
      partition on `space_to_depth(x, 2)`, s/t networks at half resolution;
      odd sizes stay masked), a key of `bijectors.masks.CHECKERBOARDS`.
    prior: key of `prior.PRIORS`; `None`: 'class_conditional' when
      `num_classes` is set, else 'standard_normal'.
    dequantizer: `None` (inputs are dequantized pixels) or a key of
      `dequantization.DEQUANTIZERS`: `call`/`fit`/`evaluate` take integer
      levels 0..255 and `call` returns `log p(k + u) − log q(u | k)`.
      'variational' (Flow++) reports that bound as
      `variational_bits_per_dim` instead of `bits_per_dim`
      (`bits_per_dim_name`).
    ema_decay: `None`, or the decay `d ∈ (0, 1)` of an exponential moving
      average (Polyak averaging) of every trainable weight, kept during
      `fit` (`ema ← d_t·ema + (1 − d_t)·w` after every step, with
      `d_t = min(d, (1 + t)/(10 + t))` so early averages are not dominated
      by the initial weights). The averages live in a second, non-trainable
      copy of every layer (saved with the model, restored on resume); the
      moving batch-norm statistics are copied to it, so it always uses the
      statistics training has accumulated. Inference (`evaluate`, `sample`,
      `log_prob`/`encode`/`decode` with `training=False`, the export) uses
      the averages while `use_ema` is True (the default); set
      `model.use_ema = False` for the raw weights.
    bn_lag: `λ ∈ [0, 1)`: the flow's batch-norm steps normalize with
      `λ·(running average) + (1 − λ)·(batch statistic)` in training, the
      paper's appendix E (`bijectors.batch_norm`); 0 = batch statistics.
    actnorm: Glow's actnorm before every coupling (`bijectors.actnorm`),
      initialised from the first batch `fit` sees (or by
      `initialize_actnorm(batch)`); saved and restored.
    permutation: 'none' (Real NVP), 'reverse' or 'conv1x1' (Glow's
      invertible 1×1 convolution in LU form): a channel permutation before
      every coupling (`bijectors.permutation`).
    made_hidden_units: hidden widths of the MADE of `prior='made'`.

  Priors (`prior=`): 'gaussian' (the default: 'standard_normal', or
  'class_conditional' with `num_classes`), 'split' (Glow's learned split
  prior) or 'made' (an autoregressive prior on the coarsest latent); see
  `tfp_realnvp.prior`. `encode` returns the standard-normal latent of the
  whole model for every prior, so `decode(ε)`, `ε ~ N(0, I)`, is a sample.
  """

  def __init__(self, image_shape, num_scales=3, num_res_blocks=4,
               num_filters=32, coupling="affine", use_batch_norm=True,
               num_classes=None, alpha=0.05, bn_momentum=0.9, bn_epsilon=1e-4,
               use_weight_norm=True, log_scale_init=1.0, l2_reg=5e-5,
               validate_inputs=True, synchronized_batch_norm=True,
               mixed_precision=None, checkerboard="masked", prior=None,
               dequantizer=None, ema_decay=None, bn_lag=0.0, actnorm=False,
               permutation="none", made_hidden_units=(512, 512), **kwargs):
    if mixed_precision is None and (keras.config.dtype_policy().name in
                                    MIXED_PRECISION_POLICIES):
      mixed_precision = keras.config.dtype_policy().name
    kwargs.setdefault("dtype", "float32")  # the flow stays float32
    super().__init__(**kwargs)
    image_shape, prior, self.scale_filters = validation.check_model_options(
        image_shape, num_scales, num_res_blocks, num_filters, coupling,
        mixed_precision, checkerboard, num_classes, prior, dequantizer, alpha,
        l2_reg)
    if ema_decay is not None and (isinstance(ema_decay, bool) or
                                  not 0.0 < ema_decay < 1.0):
      raise ValueError(f"ema_decay must be None or in (0, 1), got "
                       f"{ema_decay!r}")
    if isinstance(bn_lag, bool) or not 0.0 <= bn_lag < 1.0:
      raise ValueError(f"bn_lag must be in [0, 1), got {bn_lag!r}")
    validation.check_choice("permutation", permutation, PERMUTATIONS)
    made_hidden_units = validation.check_hidden_units("made_hidden_units",
                                                      made_hidden_units)
    # As given (config form): one int, or the list of per-scale widths.
    num_filters = (int(num_filters) if isinstance(
        num_filters, (int, np.integer)) else list(self.scale_filters))
    for key, value in dict(
        image_shape=image_shape, num_scales=int(num_scales),
        num_res_blocks=int(num_res_blocks), num_filters=num_filters,
        coupling=coupling, checkerboard=checkerboard,
        use_batch_norm=bool(use_batch_norm), alpha=float(alpha),
        num_classes=None if num_classes is None else int(num_classes),
        l2_reg=float(l2_reg), bn_momentum=float(bn_momentum),
        bn_epsilon=float(bn_epsilon), use_weight_norm=bool(use_weight_norm),
        synchronized_batch_norm=bool(synchronized_batch_norm),
        log_scale_init=float(log_scale_init), prior_name=prior,
        validate_inputs=bool(validate_inputs), dequantizer_name=dequantizer,
        mixed_precision=mixed_precision, bn_lag=float(bn_lag),
        ema_decay=None if ema_decay is None else float(ema_decay),
        actnorm=bool(actnorm), permutation=permutation,
        made_hidden_units=made_hidden_units,
        event_size=int(np.prod(image_shape))).items():
      setattr(self, key, value)

    # Every layer is created and built here: all weights exist after this.
    steps = real_nvp_flow.plan(image_shape, self.num_scales, checkerboard,
                               permutation)
    self.latent_shapes = real_nvp_flow.latent_shapes(steps)
    self._own_layers(self._make_layers(steps))
    self._use_ema = self.ema_decay is not None
    if self.ema_decay is not None:
      # The averaged copy: same layers, non-trainable, names prefixed "ema_".
      self._own_layers(self._make_layers(steps, prefix="ema_"), "ema_")
      self._ema_pairs = []
      for raw, ema in zip(self._raw_layers(), self._ema_layers()):
        ema.trainable = False
        if [tuple(v.shape) for v in raw.weights] != [tuple(v.shape)
                                                       for v in ema.weights]:
          raise AssertionError(f"EMA copy of {raw.name} differs in shape")
        self._ema_pairs += list(zip(raw.weights, ema.weights))
      self._copy_to_ema()
    self.bits_per_dim_name = (self.dequantizer.metric_name if self.dequantizer
                              else "bits_per_dim")
    self.bits_per_dim_tracker = keras.metrics.Mean(name=self.bits_per_dim_name)
    # The typicality reference of `score` (set by `fit`; saved, exported).
    self.score_statistics = scores_lib.ScoreStatistics(
        name="score_statistics")
    self.built = True

  def _make_layers(self, steps, prefix=""):
    """The built layers of one copy of the model (`FlowLayers`)."""
    nets, states, actnorms, conv1x1s = [], [], [], []
    for step in (s for s in steps if s.kind == real_nvp_flow.COUPLING):
      net = networks.CouplingResNet.for_step(
          step, self.scale_filters[step.scale], self.num_res_blocks,
          affine=self.coupling == "affine", use_batch_norm=self.use_batch_norm,
          use_weight_norm=self.use_weight_norm, bn_momentum=self.bn_momentum,
          bn_epsilon=self.bn_epsilon, log_scale_init=self.log_scale_init,
          l2=0.0 if prefix else self.l2_reg,
          synchronized_batch_norm=self.synchronized_batch_norm,
          dtype=self.mixed_precision or "float32",
          name=f"{prefix}st_net_{step.index}")
      nets.append(net)
      if self.use_batch_norm:
        state = batch_norm.BatchNormState.for_step(
            step, self.bn_momentum, self.bn_epsilon,
            synchronized=self.synchronized_batch_norm, bn_lag=self.bn_lag,
            name=f"{prefix}flow_bn_{step.index}")
        states.append(state)
      if self.actnorm:
        actnorms.append(actnorm_lib.ActNormState(
            dtype="float32", name=f"{prefix}actnorm_{step.index}"))
        actnorms[-1].build((None,) + tuple(step.shape))
      if self.permutation == permutation_lib.CONV1X1:
        conv1x1s.append(permutation_lib.Conv1x1State(
            dtype="float32", name=f"{prefix}conv1x1_{step.index}"))
        conv1x1s[-1].build((None,) + tuple(step.shape))
    prior_kwargs = ({"hidden_units": self.made_hidden_units}
                    if self.prior_name == "made" else {})
    prior = prior_lib.PRIORS[self.prior_name](
        latent_dim=self.event_size, num_classes=self.num_classes,
        latent_shapes=self.latent_shapes, dtype="float32",
        name=prefix + "prior", **prior_kwargs)
    prior.build()
    dequantizer = None
    if self.dequantizer_name:
      dequantizer = dequantization.DEQUANTIZERS[self.dequantizer_name](
          dtype="float32", name=prefix + "dequantizer")
      dequantizer.build((None,) + tuple(self.image_shape))
    return FlowLayers(nets, states, actnorms, conv1x1s, prior, dequantizer)

  # Model attribute of each `FlowLayers` field (the EMA copy's are prefixed
  # "ema_"). The names are the `.keras` weight paths, as before Glow steps;
  # the Glow-step lists exist only when the option is on.
  _LAYER_ATTRIBUTES = FlowLayers(
      "coupling_networks", "batch_norm_states", "actnorm_states",
      "conv1x1_states", "prior", "dequantizer")

  def _own_layers(self, layers, prefix=""):
    """Makes the `FlowLayers` attributes of this model (so tracked)."""
    for name, value in zip(self._LAYER_ATTRIBUTES, layers):
      if name in ("actnorm_states", "conv1x1_states") and not value:
        continue
      setattr(self, prefix + name, value)

  def _flow_layers(self, ema=False):
    """The `FlowLayers` of the raw weights or of the EMA copy."""
    prefix = "ema_" if ema else ""
    return FlowLayers(*(getattr(self, prefix + name, [])
                        for name in self._LAYER_ATTRIBUTES))

  def _raw_layers(self):
    return self._flow_layers().all()

  def _ema_layers(self):
    return self._flow_layers(ema=True).all()

  def _copy_to_ema(self):
    for raw, ema in self._ema_pairs:
      ema.assign(raw)

  def update_ema(self, decay):
    """One averaging step: `ema ← decay·ema + (1 − decay)·w` for trainable
    weights; the moving statistics (non-trainable) are copied. `fit` calls
    it after every step (`_EMAUpdate`)."""
    for raw, ema in self._ema_pairs:
      if raw.trainable:
        ema.assign(decay * ema + (1.0 - decay) * raw)
      else:
        ema.assign(raw)

  @property
  def use_ema(self):
    """Inference uses the averaged weights (only with `ema_decay`)."""
    return self._use_ema

  @use_ema.setter
  def use_ema(self, value):
    if value and self.ema_decay is None:
      raise ValueError("use_ema=True needs a model built with ema_decay")
    self._use_ema = bool(value)
    # Traced evaluate/predict functions read the layers chosen at trace time.
    self.test_function = self.predict_function = None
    self._iw_draw = None

  def _weights_for(self, training):
    """The `FlowLayers` of a pass: the raw weights in training, the
    averages in inference when `use_ema`."""
    return self._flow_layers(ema=self._use_ema and not training)

  def count_params(self):
    """Parameters of the density model (the EMA copy is not counted)."""
    left_out = {id(v) for _, v in getattr(self, "_ema_pairs", [])}
    left_out |= {id(v) for v in self.score_statistics.weights}
    return int(sum(np.prod(v.shape) for v in self.weights
                   if id(v) not in left_out))

  def fit(self, x=None, *args, callbacks=None, score_statistics=True,
          **kwargs):
    """`keras.Model.fit`; with `ema_decay`, the averages are updated after
    every step; with `actnorm`, uninitialised actnorms are first initialised
    from the first batch of `x` (`initialize_actnorm`).

    At the end, with `score_statistics` (the default), the typicality
    reference of `score` is computed on `x` with the final weights
    (`compute_score_statistics`: one inference pass over one epoch of `x`,
    `steps_per_epoch` batches if given). When `x` cannot be read again (a
    generator) or the model's densities are not finite, a warning says so
    and the reference stays unset.
    """
    if self.actnorm_init_pending():
      self.initialize_actnorm(_first_batch(x, kwargs.get("batch_size")))
    callbacks = list(callbacks or [])
    if self.ema_decay is not None:
      callbacks.append(_EMAUpdate())
    history = super().fit(x, *args, callbacks=callbacks, **kwargs)
    if score_statistics:
      try:
        self.compute_score_statistics(x, batch_size=kwargs.get("batch_size"),
                                      steps=kwargs.get("steps_per_epoch"))
      except ValueError as e:
        warnings.warn(f"fit: the typicality reference of score() was not "
                      f"computed ({e}); call "
                      f"model.compute_score_statistics(training_data)",
                      stacklevel=2)
    return history

  def actnorm_init_pending(self):
    """True when the model has actnorms that are not initialised yet."""
    return self.actnorm and not all(
        state.is_initialized() for state in self.actnorm_states)

  def initialize_actnorm(self, inputs):
    """Glow's data-dependent actnorm initialisation from one batch.

    `inputs` is what `call` takes (`x` or `(x, labels)`; integer levels
    with a dequantizer). One eager training-mode pass: every actnorm not
    yet initialised sets its bias and log-scale so that its output on this
    batch has zero mean and unit variance per channel. Nothing else
    changes (the moving batch-norm statistics the pass would update are
    restored). It runs outside any replica step, on the whole batch, so
    under a `tf.distribute` strategy every replica gets the same values.
    The EMA copy, if any, takes the initialised values.
    """
    if not self.actnorm:
      raise ValueError("initialize_actnorm: this model has no actnorm "
                       "(actnorm=False)")
    if not tf.executing_eagerly():
      raise RuntimeError("initialize_actnorm runs eagerly, not in a "
                         "tf.function")
    actnorm_vars = {id(v) for s in self.actnorm_states for v in s.weights}
    kept = [(v, v.numpy()) for v in self.weights
            if not v.trainable and id(v) not in actnorm_vars]
    with actnorm_lib.data_init():
      self(inputs, training=True)
    for v, value in kept:
      v.assign(value)
    self._agree_on_actnorm()
    if self.ema_decay is not None:
      for raw, ema in zip(self.actnorm_states, self.ema_actnorm_states):
        for a, b in zip(raw.weights, ema.weights):
          b.assign(a)

  def _agree_on_actnorm(self):
    """Under a multi-replica strategy: every replica (and worker, each of
    which initialised from its own first batch) takes the mean of the
    initialised values, so the copies stay identical."""
    strategy = self.distribute_strategy
    if strategy.num_replicas_in_sync <= 1:
      return
    variables = [v for s in self.actnorm_states for v in s.weights]

    def mean_of_replicas():
      ctx = tf.distribute.get_replica_context()
      return [ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v))
              for v in variables]

    with strategy.scope():
      means = strategy.run(mean_of_replicas)
      for v, mean in zip(variables, means):
        v.assign(strategy.experimental_local_results(mean)[0])

  def flow(self, training=False):
    """The whole flow as one TFP bijector (`MultiScaleRealNVP` after the
    logit preprocessing), `forward`: images `[..., H, W, C]` -> `[..., D]`.
    Layers run in training mode (batch statistics, moving-average updates)
    when `training` is True."""
    layers = self._weights_for(training)
    return real_nvp_flow.MultiScaleRealNVP(
        self.image_shape, self.num_scales, layers.networks,
        layers.batch_norm_states, logit.LogitPreprocess(alpha=self.alpha),
        additive=self.coupling == "additive", checkerboard=self.checkerboard,
        training=bool(training), actnorm_states=layers.actnorm_states,
        permutation=self.permutation, conv1x1_states=layers.conv1x1_states,
        split_networks=layers.prior.split_networks)

  def base_distribution(self, labels=None, temperature=1.0, training=False):
    """The prior over the flat latent `[D]` (batch `[N]` if conditional)."""
    labels = self._check_labels(labels)
    return self._weights_for(training).prior.distribution(
        labels, validation.check_temperature(temperature))

  def distribution(self, training=False, labels=None):
    """`tfd.TransformedDistribution` over images (event `image_shape`):
    exact `log_prob` of dequantized pixels, `sample` in one inverse pass;
    batch `[N]` for a conditional model's `labels` (int `[N]`)."""
    return cache.TransformedDistribution(
        distribution=self.base_distribution(labels, training=training),
        bijector=cache.Invert(self.flow(training)), name="RealNVP")

  def call(self, inputs, training=None):
    """`log_prob` (nats, `[N]`) of `x` or `(x, labels)`; with a dequantizer,
    `x` holds integer levels and this is the dequantization bound."""
    images, labels = validation.unpack_inputs(inputs, self.image_shape,
                                              self.num_classes)
    if self.dequantizer is None:
      return self.log_prob(images, labels=labels, training=bool(training))
    levels = validation.check_levels(
        validation.check_images(images, self.image_shape, self.validate_inputs,
                                allow_uint8=True), self.validate_inputs)
    dequantizer = self._weights_for(training).dequantizer
    x, log_q = dequantizer(levels, training=bool(training))
    return self.log_prob(x, labels=labels, training=bool(training)) - log_q

  def compile(self, optimizer="adam", **kwargs):
    """`keras.Model.compile` with the built-in loss (`-log_prob` + L2); builds
    the optimizer's slots, so `fit` traces its train step once."""
    if kwargs.get("loss") is not None:
      raise ValueError("RealNVP minimises -log_prob (+ L2) itself; do not "
                       "pass a loss to compile()")
    super().compile(optimizer=_keras_glue.loss_scaled(
        optimizer, self.mixed_precision), **kwargs)
    if self.optimizer is not None and not self.optimizer.built:
      self.optimizer.build(self.trainable_variables)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    """Mean negative log-likelihood in nats per image, plus the L2 penalty."""
    return _keras_glue.nll_loss(y_pred, sample_weight, self.losses)

  def compute_metrics(self, x, y, y_pred, sample_weight=None):
    self.bits_per_dim_tracker.update_state(self._nats_to_bits_per_dim(-y_pred))
    return super().compute_metrics(x, y, y_pred, sample_weight)

  @classmethod
  def from_config(cls, config):
    """A model from `get_config()`; a config saved before `checkerboard`
    existed describes masked checkerboard couplings."""
    config = dict(config)
    config.setdefault("checkerboard", "masked")
    return cls(**config)

  def get_config(self):
    keys = ("name trainable num_scales num_res_blocks num_filters coupling "
            "use_batch_norm num_classes alpha bn_momentum bn_epsilon "
            "use_weight_norm log_scale_init l2_reg validate_inputs "
            "synchronized_batch_norm mixed_precision checkerboard "
            "ema_decay bn_lag actnorm permutation made_hidden_units").split()
    return dict({k: getattr(self, k) for k in keys},
                image_shape=list(self.image_shape), prior=self.prior_name,
                dequantizer=self.dequantizer_name)

  def log_prob(self, images, labels=None, training=False):
    """Exact log-density (nats) of dequantized pixels, shape `[N]`; one
    label per image for a class-conditional model."""
    images = self._check_images(images)
    labels = self._check_labels(labels, tf.shape(images)[0])
    return self.distribution(training=training, labels=labels).log_prob(images)

  def bits_per_dim(self, inputs, training=False):
    """`-log_prob / (H·W·C·ln 2)` per image for `x` or `(x, labels)`."""
    images, labels = validation.unpack_inputs(inputs, self.image_shape,
                                              self.num_classes)
    return self._nats_to_bits_per_dim(
        -self.log_prob(images, labels=labels, training=training))

  def encode(self, images, labels=None):
    """Images `[N, H, W, C]` -> latents `[N, D]` (inference mode), standardized
    by the prior: `ε ~ N(0, I)` under class `y` for a conditional model, so
    `decode(encode(x, y), y) == x` and `decode(T·ε, y)` samples class `y`."""
    images = self._check_images(images)
    labels = self._check_labels(labels, tf.shape(images)[0])
    return self._weights_for(False).prior.standardize(
        self.flow(training=False).forward(images), labels)

  def decode(self, latents, labels=None):
    """Latents `[N, D]` -> images `[N, H, W, C]`: the inverse of `encode`."""
    z = self._check_latents(latents)
    z = self._weights_for(False).prior.unstandardize(
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
    temperature = validation.check_temperature(temperature)
    if temperature.shape.rank:  # one temperature per sample
      temperature = validation.check_rows(temperature, num_samples,
                                          "temperature")[:, None]
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

  def interpolate(self, images, steps=8, labels=None):
    """Latent manifold of four images (paper eq. 19), `[steps, steps, H, W, C]`;
    corners are the inputs. A conditional model takes one class `labels`."""
    return interpolation.interpolate(self, images, steps, labels)

  def split_latent(self, latents):
    """Flat latents `[N, D]` -> per-scale parts `[N, h_i, w_i, c_i]`."""
    return multiscale.split_latent(latents, self.latent_shapes)

  def merge_latent(self, parts):
    """Per-scale parts -> flat latents `[N, D]` (inverse of split_latent)."""
    return multiscale.merge_latent(parts)

  def importance_weighted_log_prob(self, inputs, num_samples=None, seed=None):
    """`log (1/K) Σ_j p(k + u_j) / q(u_j | k)` per image, float64 `[N]`.

    The importance-weighted bound of the discrete log-likelihood (Burda et
    al., 2016; Ho et al., 2019 §3.1): tighter as `K` grows, and for `K = 1`
    the single-draw figure of `evaluate`. The log-mean-exp is accumulated
    in float64 (log-weights of ~10³ nats per image differ by far less than
    float32 resolves when summed).

    `inputs`: `levels` or `(levels, labels)`, where `levels` is either
    - integer levels `[N, H, W, C]` in 0..255 (float or uint8) with
      `num_samples = K`: draw `j` is the inference-mode draw of the model's
      dequantizer with stateless seed `(seed, j)` (`seed` defaults to the
      dequantizer's own, so `j = 0` is exactly what `model(levels)`
      evaluates); a model without a dequantizer draws `u ~ U[0, 1)` with
      seed `(seed or 0, j)`;
    - or, for a model without a dequantizer, `K` given dequantized draws
      `[N, K, H, W, C]` (e.g. the `noise_draws=K` pipelines of
      `training.data.load`, whose draw 0 is the evaluation pipeline's noise).
    """
    images, labels = (inputs if isinstance(inputs, (tuple, list)) else
                      (inputs, None))
    images = tf.convert_to_tensor(images)
    if self.num_classes:
      labels = self._check_labels(labels, tf.shape(images)[0])
    elif labels is not None:
      raise ValueError("labels were given to an unconditional model "
                       "(num_classes=None)")
    draws = None
    if images.shape.rank == 5:
      if self.dequantizer is not None:
        raise ValueError(
            "this model dequantizes its inputs itself (dequantizer="
            f"{self.dequantizer_name!r}): pass integer levels [N, H, W, C] "
            "and num_samples, not dequantized draws [N, K, H, W, C]")
      draws = tf.cast(images, tf.float32)
      if num_samples is not None and num_samples != draws.shape[1]:
        raise ValueError(f"num_samples={num_samples} but the draws have "
                         f"K={draws.shape[1]} (shape [N, K, H, W, C])")
      num_samples = int(draws.shape[1])
    else:
      validation.check_positive_int("num_samples", num_samples)
      num_samples = int(num_samples)
      levels = validation.check_levels(
          validation.check_images(images, self.image_shape,
                                  self.validate_inputs, allow_uint8=True),
          self.validate_inputs)
    dequantizer = self._weights_for(False).dequantizer
    if seed is None:
      seed = dequantizer.seed if dequantizer is not None else 0
    if getattr(self, "_iw_draw", None) is None:
      self._iw_draw = (
          tf.function(self._log_weight, reduce_retracing=True),
          tf.function(lambda x, labels: self.log_prob(x, labels=labels),
                      reduce_retracing=True))
    draw_levels, draw_given = self._iw_draw
    total = None
    for j in range(num_samples):
      if draws is not None:
        log_w = draw_given(draws[:, j], labels)
      else:
        log_w = draw_levels(levels, labels, tf.constant([seed, j], tf.int64))
      log_w = tf.cast(log_w, tf.float64)
      total = log_w if total is None else tf.reduce_logsumexp(
          tf.stack([total, log_w]), axis=0)
    return total - math.log(num_samples)

  def _log_weight(self, levels, labels, seed):
    """`log p(k + u) − log q(u | k)` of the inference-mode draw `seed`."""
    dequantizer = self._weights_for(False).dequantizer
    levels = tf.cast(levels, tf.float32)
    if dequantizer is None:
      u = tf.random.stateless_uniform(tf.shape(levels), seed=seed)
      x, log_q = levels + tf.minimum(u, dequantization.MAX_NOISE), 0.0
    else:
      x, log_q = dequantizer(levels, training=False, seed=seed)
    return self.log_prob(x, labels=labels) - log_q

  def importance_weighted_bits_per_dim(self, inputs, num_samples=None,
                                       seed=None):
    """`importance_weighted_log_prob` in bits/dim (float64 `[N]`)."""
    return -self.importance_weighted_log_prob(inputs, num_samples, seed) / (
        self.event_size * math.log(2.0))

  # --- out-of-distribution scores (tfp_realnvp.scores) -----------------------

  def score(self, images, kind="bpd"):
    """Per-image out-of-distribution score, float32 `[N]`, higher = more
    unusual: 'bpd' (bits/dim at the bin centres), 'typicality'
    (`|bpd − mean training bpd|`, Nalisnick et al. 2019) or 'complexity'
    (`bpd − PNG bits/dim`, Serrà et al. 2020); see `tfp_realnvp.scores`.

    `images`: integer pixel levels `[N, H, W, C]`, uint8 or float (floored,
    so dequantized pixels give their levels back). A class-conditional
    model scores `p(x) = (1/K) Σ_y p(x | y)`. 'typicality' needs the
    reference of `fit`/`compute_score_statistics` computed with the current
    weights, else a `ValueError` (checked when called eagerly; inside a
    `tf.function`, when traced).
    """
    kind = scores_lib.check_kind(kind)
    levels = scores_lib.to_levels(validation.check_images(
        images, self.image_shape, check_values=self.validate_inputs,
        allow_uint8=True))
    if kind == "typicality":
      with tf.init_scope():  # eager even while a tf.function traces this
        self.check_score_statistics()
    return self._score(levels, kind)

  def _score(self, levels, kind):
    """`score` of checked uint8 levels (graph-safe, no reference check)."""
    bpd = self._centre_bits_per_dim(levels)
    if kind == "bpd":
      return bpd
    if kind == "typicality":
      return scores_lib.typicality(bpd, self.score_statistics.mean)
    return scores_lib.complexity(bpd, scores_lib.png_bits_per_dim(levels))

  def _centre_bits_per_dim(self, levels):
    """`−log2 p(k + ½) / D` of uint8 levels `[N, H, W, C]` (inference mode;
    the class marginal for a conditional model)."""
    x = tf.cast(levels, tf.float32) + 0.5
    if not self.num_classes:
      return self._nats_to_bits_per_dim(-self.log_prob(x))
    rows = tf.shape(x)[0]
    per_class = tf.stack([
        self.log_prob(x, labels=tf.fill([rows], c))
        for c in range(self.num_classes)])
    log_p = (tf.reduce_logsumexp(per_class, axis=0) -
             math.log(self.num_classes))
    return self._nats_to_bits_per_dim(-log_p)

  def _score_digest(self):
    """Digest of every weight but the score statistics, and of `use_ema`."""
    own = {id(v) for v in self.score_statistics.weights}
    return scores_lib.weights_digest(
        [v for v in self.weights if id(v) not in own] +
        [np.array([int(bool(self._use_ema))], np.int8)])

  def check_score_statistics(self):
    """A `ValueError` unless the typicality reference is set and belongs to
    the current weights (and the current `use_ema`)."""
    stats = self.score_statistics
    if not stats.is_set():
      raise ValueError(
          "score(kind='typicality') needs the mean training bits/dim, which "
          "this model does not have (fit() computes it at its end): call "
          "model.compute_score_statistics(training_data)")
    if not stats.is_current(self._score_digest()):
      raise ValueError(
          "the typicality reference was computed with other weights (they "
          "changed since, or use_ema was switched): call "
          "model.compute_score_statistics(training_data) again")

  def compute_score_statistics(self, data, batch_size=None, steps=None):
    """Sets the typicality reference: mean and std of the bin-centre
    bits/dim (`score(kind='bpd')`) over `data`, with the current weights.

    `data`: what `fit` takes (a `tf.data.Dataset`, whose `steps` batches or
    whole finite stream are used, or arrays `x` / `(x, labels)` cut into
    `batch_size` rows). Labels are ignored (scores are of the image alone).
    Sums in float64. Returns `{'train_bpd_mean', 'train_bpd_std',
    'train_images'}`; a `ValueError` when `data` yields no image or a
    non-finite density (nothing is recorded then).
    """
    if not tf.executing_eagerly():
      raise RuntimeError("compute_score_statistics runs eagerly, not in a "
                         "tf.function")
    # A local function: traced once per call (fit calls this once), never
    # attached to the model (exports track the model's attributes).
    centre_bpd = tf.function(self._centre_bits_per_dim, reduce_retracing=True)
    total = total_sq = 0.0
    count = 0
    for images in _image_batches(data, batch_size, steps):
      levels = scores_lib.to_levels(validation.check_images(
          images, self.image_shape, check_values=self.validate_inputs,
          allow_uint8=True))
      bpd = centre_bpd(levels).numpy().astype(np.float64)
      if not np.all(np.isfinite(bpd)):
        raise ValueError(f"{int(np.sum(~np.isfinite(bpd)))} images of the "
                         f"data have a non-finite density")
      total += float(np.sum(bpd))
      total_sq += float(np.sum(bpd ** 2))
      count += len(bpd)
    if not count:
      raise ValueError("the data yielded no images")
    mean = total / count
    std = math.sqrt(max(total_sq / count - mean ** 2, 0.0))
    self.score_statistics.record(mean, std, count, self._score_digest())
    return self.score_statistics.as_dict()

  def _nats_to_bits_per_dim(self, nats):
    return nats / (self.event_size * math.log(2.0))

  def _check_images(self, images):
    return validation.check_images(images, self.image_shape,
                                   check_values=self.validate_inputs)

  def _check_latents(self, latents):
    return validation.check_latents(latents, self.event_size,
                                    check_values=self.validate_inputs)

  def _check_labels(self, labels, num=None):
    if not self.num_classes:
      if labels is not None:
        raise ValueError("labels were given to an unconditional model "
                         "(num_classes=None)")
      return None
    return validation.check_labels(labels, self.num_classes, rows=num,
                                   check_values=self.validate_inputs)

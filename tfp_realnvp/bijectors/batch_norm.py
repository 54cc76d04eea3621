"""Batch normalization as a bijector (Dinh et al., 2017, §3.7, eq. 17-18).

```
  forward (data -> latent):  y = (x - μ) / sqrt(σ² + ε) · exp(log_γ) + β
  log|det J| (eq. 18):       H·W · Σ_c [ log_γ_c - ½ log(σ_c² + ε) ]
  inverse:                   x = (y - β) · exp(-log_γ) · sqrt(σ² + ε) + μ
```

Statistics are per channel over the batch and spatial axes. In inference
mode (`evaluate`, `predict`, export, sampling) the moving averages are used
and the bijector is an exact per-channel affine map. In training mode
(`training=True`, what Keras `fit` passes) the statistics `μ, σ²` depend on
the batch, and the moving averages are updated
`m ← momentum·m + (1 - momentum)·batch` once per call (once per evaluation,
`tfp_realnvp.bijectors.evaluation()`); the log-det treats `μ, σ²` as
constants (eq. 18 with the statistics the forward pass used). Which
training statistics:

- `bn_lag = 0` (default): the current batch's `μ_B, σ²_B`, as in ordinary
  batch norm (Ioffe & Szegedy). This is *not* the paper's variant.
- `bn_lag = λ > 0`: the paper's running-average batch norm (Dinh et al.,
  2017, appendix E; `bn_lag` in the authors' `real_nvp_utils.py`), robust to
  small batches: a blend of the running average (no gradient) and the
  batch statistic (with gradient),

  ```
    μ = λ·sg(μ̃) + (1 − λ)·μ_B        σ² = λ·sg(σ̃²) + (1 − λ)·σ²_B
  ```

  where `μ̃, σ̃²` are the moving averages before this step's update and
  `sg` is stop-gradient. With `λ = momentum` this is the paper's formula
  (normalize with the updated running average, gradient through the
  current batch only). The very first training step has no running average
  yet: it uses the batch statistics and sets the moving averages to them
  (the authors divide by `1 − λ^(t+1)` instead, which does not remove the
  initial values' bias; this avoids it).

A training-mode bijector has no inverse (the batch statistics of the
unknown `x` are not available): `inverse` raises a `ValueError`, except for
a `forward` result of the same evaluation, which the cache returns exactly.
Sampling therefore always runs in inference mode, a pure function of the
weights, and never updates the moving averages from generated data.

Training mode with batch statistics (`bn_lag = 0`, one replica or
unsynchronized, float32, learned scale) runs TF's fused kernel
(`FusedBatchNormV3`, oneDNN on CPU, cuDNN on GPU) for `y`
(`_fused_train_forward`). TF's gradient of that kernel passes none through
its variance output, which eq. 18's log-det needs, so that part,
`∂ldj/∂x = −H·W·(x − μ)/(M·(σ² + ε))` per channel (`M` the values per
channel), is added by a term of value zero. Speed: a first version of this path
(the same kernel with a `tf.custom_gradient`, which leaked traced models)
measured 187.7 → 182.5 ms per training step natively and 203.7 → 192.6
ms capped to AVX2 (2026-12-08, 2-core Xeon with AMX, the bench's 32×32×3
squeezed Glow-step model, one process, paths interleaved, 5 passes); this
version is not timed yet. Values and
gradients equal the moments-based path's (tested), which every other case
keeps.

All state (moving mean/variance, learned `log_γ`, `β`) lives in a Keras 3
layer, `BatchNormState`, owned by the model; the bijector only reads it (and
updates the moving averages in training mode). Unlike `tfb.BatchNormalization`
the training flag is chosen per call, not fixed at construction.
"""

import keras
import tensorflow as tf
from tfp_realnvp import normalization
from tfp_realnvp.bijectors import _util
from tfp_realnvp.bijectors import coupling
from tfp_realnvp.bijectors._one_pass import OnePassBijector


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class BatchNormState(keras.layers.Layer):
  """Keras 3 layer: the variables of one `FlowBatchNorm` bijector (no call).

  (Its class name is part of the `.keras` weight paths, so it stays
  `BatchNormState`: checkpoints written before the bijector's rename load.)

  Args:
    momentum: decay of the moving averages (the authors used 0.9-style
      averages; Keras' own default is 0.99).
    epsilon: added to the variance (the authors used 1e-4).
    learn_scale: learn `log_γ` and `β` after normalizing (both start at 0,
      so the learned part starts as the identity).
    synchronized: under a multi-replica `tf.distribute` strategy, use the
      statistics of the global batch (all-reduced), so the training objective
      does not depend on the number of replicas
      (see `tfp_realnvp.normalization`).
    bn_lag: weight `λ ∈ [0, 1)` of the running average in the training
      statistics (module docstring; 0 = batch statistics, the paper's
      appendix E uses a running average). `λ > 0` adds a `num_updates`
      counter variable.
  """

  def __init__(self, momentum=0.9, epsilon=1e-4, learn_scale=True,
               synchronized=True, bn_lag=0.0, **kwargs):
    super().__init__(**kwargs)
    normalization.validate_momentum_epsilon(momentum, epsilon)
    if isinstance(bn_lag, bool) or not 0.0 <= bn_lag < 1.0:
      raise ValueError(f"bn_lag must be in [0, 1), got {bn_lag!r}")
    self.momentum = float(momentum)
    self.epsilon = float(epsilon)
    self.learn_scale = bool(learn_scale)
    self.synchronized = bool(synchronized)
    self.bn_lag = float(bn_lag)

  @classmethod
  def for_step(cls, step, momentum, epsilon, synchronized=True, bn_lag=0.0,
               name=None):
    """The built state of the batch norm after one coupling `Step`."""
    state = cls(momentum, epsilon, synchronized=synchronized, bn_lag=bn_lag,
                dtype="float32", name=name or f"flow_bn_{step.index}")
    state.build((None,) + tuple(step.shape))
    return state

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.moving_mean = self.add_weight(
        name="moving_mean", shape=(channels,), initializer="zeros",
        trainable=False, aggregation="mean")
    self.moving_variance = self.add_weight(
        name="moving_variance", shape=(channels,), initializer="ones",
        trainable=False, aggregation="mean")
    if self.bn_lag:
      # Training steps seen (the first one has no running average yet).
      self.num_updates = self.add_weight(
          name="num_updates", shape=(), initializer="zeros",
          trainable=False, aggregation="mean")
    if self.learn_scale:
      self.log_gamma = self.add_weight(name="log_gamma", shape=(channels,),
                                       initializer="zeros")
      self.beta = self.add_weight(name="beta", shape=(channels,),
                                  initializer="zeros")

  def call(self, x):
    raise TypeError("BatchNormState only holds variables; use the "
                    "tfp_realnvp.bijectors.FlowBatchNorm bijector.")

  def get_config(self):
    config = super().get_config()
    config.update(momentum=self.momentum, epsilon=self.epsilon,
                  learn_scale=self.learn_scale, synchronized=self.synchronized,
                  bn_lag=self.bn_lag)
    return config


class FlowBatchNorm(OnePassBijector):
  """TFP bijector: the flow's batch-norm step over `[..., H, W, C]` (eq. 17-18).

  Its variables live in a `BatchNormState`; not to be confused with
  `tfp_realnvp.normalization.BatchNorm` (a plain Keras layer inside the
  s/t networks, no log-det) or TFP's `tfb.BatchNormalization` (tf_keras).

  Example:

  ```python
  state = BatchNormState(momentum=0.9, epsilon=1e-4)
  state.build((None, 8, 8, 3))
  bn = FlowBatchNorm(state, training=True)
  y = bn.forward(x)            # normalizes with batch stats, updates averages
  ldj = bn.forward_log_det_jacobian(x, event_ndims=3)
  ```

  Args:
    state: a built `BatchNormState` layer.
    training: use batch statistics and update the moving averages.
  """


  def __init__(self, state, training=False, validate_args=False, name=None):
    parameters = dict(locals())
    if not isinstance(state, BatchNormState):
      raise ValueError(f"state must be a BatchNormState layer, got "
                       f"{type(state).__name__}")
    if not state.built:
      raise ValueError("state must be built (call state.build(shape)) before "
                       "it is wrapped in a bijector")
    self._state = state
    self._training = bool(training)
    super().__init__(forward_min_event_ndims=3, validate_args=validate_args,
                     parameters=parameters, name=name or "batch_norm")

  @property
  def state(self):
    return self._state

  @property
  def training(self):
    return self._training

  def _scale_and_shift(self, dtype):
    if not self._state.learn_scale:
      return tf.zeros([], dtype), tf.zeros([], dtype)
    return (tf.cast(self._state.log_gamma, dtype),
            tf.cast(self._state.beta, dtype))

  def _moving_stats(self, dtype):
    return (tf.cast(self._state.moving_mean, dtype),
            tf.cast(self._state.moving_variance, dtype))

  def _batch_stats_and_update(self, x):
    """The training statistics per channel (batch, or blended with the
    running average when `bn_lag > 0`); updates the moving averages."""
    flat, _ = _util.flatten_batch(x)
    # Moments in float32 even under a mixed-precision policy.
    state = self._state
    mean, variance = normalization.moments(flat, axes=[0, 1, 2],
                                           synchronized=state.synchronized)
    if not state.bn_lag:
      normalization.update_moving(state.moving_mean, mean, state.momentum)
      normalization.update_moving(state.moving_variance, variance,
                                  state.momentum)
      return tf.cast(mean, x.dtype), tf.cast(variance, x.dtype)
    lag = state.bn_lag
    first = tf.convert_to_tensor(state.num_updates) < 0.5
    running_mean = tf.where(first, tf.stop_gradient(mean),
                            tf.convert_to_tensor(state.moving_mean))
    running_var = tf.where(first, tf.stop_gradient(variance),
                           tf.convert_to_tensor(state.moving_variance))
    used_mean = lag * tf.stop_gradient(running_mean) + (1.0 - lag) * mean
    used_var = lag * tf.stop_gradient(running_var) + (1.0 - lag) * variance
    m = state.momentum
    state.moving_mean.assign(m * running_mean +
                             (1.0 - m) * tf.stop_gradient(mean))
    state.moving_variance.assign(m * running_var +
                                 (1.0 - m) * tf.stop_gradient(variance))
    state.num_updates.assign_add(1.0)
    return tf.cast(used_mean, x.dtype), tf.cast(used_var, x.dtype)

  def _log_det(self, x, variance, log_gamma):
    """Per-event forward log-det, eq. 18: H·W·Σ_c(log_γ - ½log(σ²+ε))."""
    per_channel = log_gamma - 0.5 * tf.math.log(variance + self._state.epsilon)
    height, width, channels = (x.shape[-3:] if x.shape.rank is not None
                               else (None, None, None))
    # Static sizes when known (fewer graph ops); the same values either way.
    per_channel = tf.broadcast_to(per_channel, [channels] if channels else
                                  tf.shape(x)[-1:])
    spatial = (tf.constant(float(height * width), x.dtype) if height and width
               else tf.cast(tf.shape(x)[-3] * tf.shape(x)[-2], x.dtype))
    ldj = spatial * tf.reduce_sum(per_channel)
    return tf.fill(tf.shape(x)[:-3], ldj)

  def _fused_applies(self, x):
    state = self._state
    return (self._training and not state.bn_lag and state.learn_scale and
            x.dtype == tf.float32 and x.shape[-3:].is_fully_defined() and
            not normalization.syncs_across_replicas(state.synchronized))

  def _augmented_forward(self, x):
    if self._fused_applies(x):
      state = self._state
      flat, batch_shape = _util.flatten_batch(x)
      y, ldj, mean, variance = _fused_train_forward(
          flat, tf.convert_to_tensor(state.log_gamma),
          tf.convert_to_tensor(state.beta), state.epsilon)
      normalization.update_moving(state.moving_mean, mean, state.momentum)
      normalization.update_moving(state.moving_variance, variance,
                                  state.momentum)
      return (_util.unflatten_batch(y, batch_shape),
              tf.fill(tf.shape(x)[:-3], ldj))
    if self._training:
      mean, variance = self._batch_stats_and_update(x)
    else:
      mean, variance = self._moving_stats(x.dtype)
    log_gamma, beta = self._scale_and_shift(x.dtype)
    y = ((x - mean) * tf.math.rsqrt(variance + self._state.epsilon) *
         tf.exp(log_gamma) + beta)
    fldj = self._log_det(x, variance, log_gamma)
    return y, fldj

  def _augmented_inverse(self, y):
    if self._training:
      raise ValueError(coupling.TRAINING_INVERSE_ERROR.format(name=self.name))
    mean, variance = self._moving_stats(y.dtype)
    log_gamma, beta = self._scale_and_shift(y.dtype)
    x = ((y - beta) * tf.exp(-log_gamma) *
         tf.sqrt(variance + self._state.epsilon) + mean)
    ildj = -self._log_det(y, variance, log_gamma)
    return x, ildj


def _fused_train_forward(x, log_gamma, beta, epsilon):
  """`(y, ldj, μ_B, σ²_B)` of a training-mode batch norm of `[N, H, W, C]`
  float32 `x`: `y` from the fused kernel, `ldj` the per-example log-det of
  eq. 18 (a scalar: every example gets the same), the biased batch
  statistics without gradient (for the moving averages).

  The kernel's gradient reaches `x` through `y` only; the log-det's
  gradient through `σ²_B`, `g = −H·W·(x − μ)/(M·(σ² + ε))`, is added by a
  term whose value is exactly zero, `Σ sg(g)·x − sg(Σ sg(g)·x)` (`sg`:
  stop-gradient), so the value is eq. 18's and the gradient the full one.
  (Not `tf.custom_gradient`: in a graph it registers its gradient function
  globally, which kept every traced model alive.)"""
  height, width = x.shape[-3:-1]
  spatial = float(height * width)
  y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
      x, tf.exp(log_gamma), beta, epsilon=epsilon, is_training=True)
  # Eq. 18 and the normalization use the biased variance.
  variance, count = normalization.fused_biased_variance(unbiased, x)
  variance = tf.stop_gradient(variance)
  mean = tf.stop_gradient(mean)
  ldj = spatial * tf.reduce_sum(
      log_gamma - 0.5 * tf.math.log(variance + epsilon))
  g = tf.stop_gradient((x - mean) * (-spatial / (count * (variance + epsilon))))
  through_variance = tf.reduce_sum(g * x)
  ldj = ldj + (through_variance - tf.stop_gradient(through_variance))
  return y, ldj, mean, variance

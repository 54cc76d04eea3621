"""Adam and Adamax with TensorFlow's fused update kernels.

The same optimizers, hyper-parameters, variables and checkpoints as
`keras.optimizers.Adam` / `keras.optimizers.Adamax` (subclasses; every
Keras feature — schedules, clipping, weight decay, `use_ema`, loss scaling,
`tf.distribute` — is the base class's), but each variable's step is one op,
`ResourceApplyAdam` / `ResourceApplyAdaMax`, instead of the ~40 element-wise
ops Keras writes per variable (casts, powers and variable reads included):

```
  m ← m + (g − m)(1 − β₁)      v ← v + (g² − v)(1 − β₂)       (Adam)
  θ ← θ − α·m / (√v + ε),      α = lr·√(1 − β₂ᵗ) / (1 − β₁ᵗ)
```

the formula of `keras.optimizers.Adam.update_step` (and of Adamax's), with
the same bias-correction scalars. Those scalars (the learning rate, β₁ᵗ,
β₂ᵗ and the constants) are the same for every variable of one step: they
are built once per step and dtype (`_StepScalars`), not once per variable:
13 graph ops fewer per variable (the train step of a 1-scale 8×8 model,
84 variables: 4,733 → 3,652 ops; measured 2026-12-07, CI VM).

Why not Keras' own: measured 2026-12-07 on the 2-core CI VM (Intel Xeon,
AVX-512): the update of a 210-variable model (2 scales, 1 residual block)
was 8,634 graph ops and took 4.5 s to trace, a third of the first train
step's tracing; every step also ran those ops. The numbers with these
classes are in the CHANGELOG. A gradient that is not a dense tensor of the
variable's floating dtype falls back to the Keras update.
"""

import threading

import keras
import tensorflow as tf


def _fusable(gradient, variable):
  return (isinstance(gradient, tf.Tensor) and hasattr(variable, "handle")
          and tf.as_dtype(variable.dtype).is_floating)


class _StepScalars:
  """The scalars every variable's update of one step shares, built once.

  Keras' TF backend applies a step in `_distributed_tf_update_step` (in
  the cross-replica context under a `tf.distribute` strategy), which calls
  `update_step` for each variable; the scalars the first call builds are
  kept until that function returns, so they never leave the graph, the
  `tf.cond` branch or the step they were built in, and they are per thread.
  A direct `update_step` call (no step in progress) builds its own.
  """

  def __init__(self):
    self._local = threading.local()

  def run(self, fn, *args):
    """`fn(*args)` (one step's updates) with a fresh cache in scope."""
    outer = getattr(self._local, "cache", None)
    self._local.cache = {}
    try:
      return fn(*args)
    finally:
      self._local.cache = outer

  def get(self, key, build):
    cache = getattr(self._local, "cache", None)
    if cache is None:
      return build()
    if key not in cache:
      cache[key] = build()
    return cache[key]


class _SharedScalarsMixin:
  """Each step's variable updates share one `_StepScalars`."""

  _shared_scalars = None

  def _distributed_tf_update_step(self, distribution, grads_and_vars,
                                  learning_rate):
    if self._shared_scalars is None:
      self._shared_scalars = _StepScalars()
    return self._shared_scalars.run(super()._distributed_tf_update_step,
                                    distribution, grads_and_vars,
                                    learning_rate)

  def _scalars(self, variable, learning_rate, build):
    """`build(dtype)`, once per step, dtype and learning-rate tensor."""
    dtype = variable.dtype
    if self._shared_scalars is None:
      return build(dtype)
    return self._shared_scalars.get((dtype, id(learning_rate)),
                                    lambda: build(dtype))


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class Adam(_SharedScalarsMixin, keras.optimizers.Adam):
  """`keras.optimizers.Adam` with the fused `ResourceApplyAdam` update.

  Example:

  ```python
  model.compile(optimizer=tfp_realnvp.optimizers.Adam(1e-3))
  ```
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad or not _fusable(gradient, variable):
      return super().update_step(gradient, variable, learning_rate)
    def build(dtype):
      step = tf.cast(self.iterations + 1, dtype)
      beta_1, beta_2 = (tf.constant(self.beta_1, dtype),
                        tf.constant(self.beta_2, dtype))
      return dict(beta1_power=tf.pow(beta_1, step),
                  beta2_power=tf.pow(beta_2, step),
                  lr=tf.cast(learning_rate, dtype), beta1=beta_1,
                  beta2=beta_2, epsilon=tf.constant(self.epsilon, dtype))

    index = self._get_variable_index(variable)
    return tf.raw_ops.ResourceApplyAdam(
        var=variable.handle, m=self._momentums[index].value.handle,
        v=self._velocities[index].value.handle,
        grad=tf.cast(gradient, variable.dtype),
        **self._scalars(variable, learning_rate, build))


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class Adamax(_SharedScalarsMixin, keras.optimizers.Adamax):
  """`keras.optimizers.Adamax` with the fused `ResourceApplyAdaMax` update."""

  def update_step(self, gradient, variable, learning_rate):
    if not _fusable(gradient, variable):
      return super().update_step(gradient, variable, learning_rate)
    def build(dtype):
      step = tf.cast(self.iterations + 1, dtype)
      beta_1 = tf.constant(self.beta_1, dtype)
      return dict(beta1_power=tf.pow(beta_1, step),
                  lr=tf.cast(learning_rate, dtype), beta1=beta_1,
                  beta2=tf.constant(self.beta_2, dtype),
                  epsilon=tf.constant(self.epsilon, dtype))

    index = self._get_variable_index(variable)
    return tf.raw_ops.ResourceApplyAdaMax(
        var=variable.handle, m=self._m[index].value.handle,
        v=self._u[index].value.handle,
        grad=tf.cast(gradient, variable.dtype),
        **self._scalars(variable, learning_rate, build))


# Names -> the fused classes (`RealNVP.compile("adam")`, the CLI's
# `--optimizer`).
OPTIMIZERS = {"adam": Adam, "adamax": Adamax}

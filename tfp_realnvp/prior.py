"""The base distribution p_Z of the flow (Dinh et al., 2017, §3.1, §4.1).

A prior is a Keras layer (its variables belong to the model) with three
methods, all over the flat latent `[N, D]` of `MultiScaleRealNVP`:

- `distribution(labels, temperature)`: the `tfd` distribution of `z`;
- `standardize(z, labels)`: `z -> ε ~ N(0, I)` (what `RealNVP.encode`
  returns, so a latent is comparable across classes);
- `unstandardize(ε, labels)`: the inverse (what `decode` and `sample` use).

Priors here:

- `StandardNormalPrior`: `z ~ N(0, I_D)`, the paper's isotropic unit Gaussian.
- `ClassConditionalPrior`: an extension (the paper trains unconditional
  models only; a class-dependent Gaussian base is the usual way to
  condition a flow, as in Glow's class-conditional prior). Every class `k`
  has its own mean `μ_k ∈ R^D` and log-std `log σ_k ∈ R^D`, learned, both
  initialised at 0 so training starts from the unconditional model.

A new prior is one subclass of `Prior` plus one entry in `PRIORS` (the
`prior=` option of `RealNVP`).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def gaussian(loc, log_scale):
  """Diagonal Gaussian with event shape `[D]` (batch from `loc`)."""
  return tfd.Independent(tfd.Normal(loc=loc, scale=tf.exp(log_scale)),
                         reinterpreted_batch_ndims=1)


class Prior(keras.layers.Layer):
  """Base class: a diagonal Gaussian over `[D]` given by
  `loc_and_log_scale(labels)`; subclasses may override all three methods.

  Args:
    latent_dim: `D`, the size of the flat latent.
    num_classes: number of classes of a conditional prior, else `None`.
  """

  conditional = False

  def __init__(self, latent_dim, num_classes=None, **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)
    self.num_classes = None if num_classes is None else int(num_classes)

  def build(self, input_shape=None):
    """Creates the variables, if any (the model calls it once)."""
    del input_shape

  def loc_and_log_scale(self, labels):
    """`(loc, log_scale)`, each `[D]` or `[N, D]`."""
    raise NotImplementedError

  def distribution(self, labels=None, temperature=1.0):
    """`p_Z` with its std scaled by `temperature` (a positive tensor)."""
    loc, log_scale = self.loc_and_log_scale(labels)
    return gaussian(loc, log_scale + tf.math.log(
        tf.cast(temperature, log_scale.dtype)))

  def standardize(self, z, labels=None):
    loc, log_scale = self.loc_and_log_scale(labels)
    return (z - loc) * tf.exp(-log_scale)

  def unstandardize(self, eps, labels=None):
    loc, log_scale = self.loc_and_log_scale(labels)
    return eps * tf.exp(log_scale) + loc

  def call(self, labels):
    return self.loc_and_log_scale(labels)

  def get_config(self):
    config = super().get_config()
    config.update(latent_dim=self.latent_dim, num_classes=self.num_classes)
    return config


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class StandardNormalPrior(Prior):
  """`z ~ N(0, I_D)`; no variables."""

  def __init__(self, latent_dim, num_classes=None, **kwargs):
    if num_classes is not None:
      raise ValueError(f"the standard-normal prior is unconditional; got "
                       f"num_classes={num_classes} (use "
                       f"prior='class_conditional')")
    super().__init__(latent_dim, None, **kwargs)

  def loc_and_log_scale(self, labels):
    del labels
    zeros = tf.zeros([self.latent_dim])
    return zeros, zeros

  def standardize(self, z, labels=None):
    return z

  def unstandardize(self, eps, labels=None):
    return eps


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ClassConditionalPrior(Prior):
  """Per-class mean and log-std tables of shape `[num_classes, D]`."""

  conditional = True

  def __init__(self, num_classes, latent_dim, **kwargs):
    if num_classes is None or num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    super().__init__(latent_dim, num_classes, **kwargs)

  def build(self, input_shape=None):
    shape = (self.num_classes, self.latent_dim)
    self.class_loc = self.add_weight(name="class_loc", shape=shape,
                                     initializer="zeros")
    self.class_log_scale = self.add_weight(name="class_log_scale", shape=shape,
                                           initializer="zeros")

  def loc_and_log_scale(self, labels):
    """`(loc, log_scale)`, each `[N, D]`, for int labels `[N]`."""
    return (tf.gather(self.class_loc, labels),
            tf.gather(self.class_log_scale, labels))


# `prior=` option of `RealNVP` -> class.
PRIORS = {"standard_normal": StandardNormalPrior,
          "class_conditional": ClassConditionalPrior}

"""The Gaussian base distribution of the flow, optionally class-conditional.

Unconditional: `z ~ N(0, I_D)` (the paper's isotropic unit Gaussian).
Class-conditional (an extension: the paper trains unconditional models
only; a class-dependent Gaussian base is the usual way to condition a flow,
as in Glow's class-conditional prior): every class `k` has its own mean
`μ_k ∈ R^D` and log-std
`log σ_k ∈ R^D`, learned, both initialised at 0 so training starts from the
unconditional model.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class ClassConditionalPrior(keras.layers.Layer):
  """Per-class mean and log-std tables of shape `[num_classes, D]`."""

  def __init__(self, num_classes, latent_dim, **kwargs):
    super().__init__(**kwargs)
    if num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    self.num_classes = int(num_classes)
    self.latent_dim = int(latent_dim)

  def build(self, input_shape=None):
    shape = (self.num_classes, self.latent_dim)
    self.class_loc = self.add_weight(name="class_loc", shape=shape,
                                     initializer="zeros")
    self.class_log_scale = self.add_weight(name="class_log_scale", shape=shape,
                                           initializer="zeros")

  def call(self, labels):
    """Returns `(loc, log_scale)`, each `[N, D]`, for int labels `[N]`."""
    return (tf.gather(self.class_loc, labels),
            tf.gather(self.class_log_scale, labels))

  def get_config(self):
    config = super().get_config()
    config.update(num_classes=self.num_classes, latent_dim=self.latent_dim)
    return config


def gaussian(loc, log_scale):
  """Diagonal Gaussian with event shape `[D]` (batch from `loc`)."""
  return tfd.Independent(tfd.Normal(loc=loc, scale=tf.exp(log_scale)),
                         reinterpreted_batch_ndims=1)

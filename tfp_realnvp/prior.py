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
- `SplitPrior` ('split'): Glow's learned prior (Kingma & Dhariwal, 2018,
  §3 "split"). Every factored-out latent `z(i)` gets a diagonal Gaussian
  whose mean and log-scale come from a zero-initialised 3×3 conv of the
  half that is kept at that factor-out, `h(i)`:
  `p(z(i) | h(i)) = N(μ(h(i)), σ(h(i))²)`. The coarsest latent `z(L)` gets a
  learned mean and log-scale (one per class for a conditional model).
- `MADEPrior` ('made'): an autoregressive prior on the coarsest latent
  (Real NVP §4.1 allows any tractable base): a MADE (Germain et al., 2015;
  `tfp_realnvp.made`) gives `μ_i(z_<i)`, `α_i(z_<i)`, i.e. a masked
  autoregressive flow `ε = (z − μ)·exp(−α)`
  (`bijectors.autoregressive`). Density evaluation is one pass; sampling
  is sequential over the coarsest latent's dimensions.

'gaussian' names today's choice: 'standard_normal', or 'class_conditional'
when the model has classes (`resolve`).

**How the split prior stays a flat-latent prior.** The conditional Gaussian
of `z(i)` given `h(i)` is the same thing as the bijection
`z(i) -> (z(i) − μ(h(i)))·exp(−log σ(h(i)))` (a channel affine coupling
conditioned on the kept half, log-det `−Σ log σ`) followed by `N(0, I)`.
`SplitPrior.split_networks` are those conditioners; the flow inserts one
coupling before every factor-out (`MultiScaleRealNVP(split_networks=...)`),
so the flow's latent is already standardized there, and this layer only
models the coarsest part. `RealNVP.encode` therefore returns `ε ~ N(0, I)`
of the whole model for every prior, and `decode(ε)` samples.

A new prior is one subclass of `Prior` plus one entry in `PRIORS` (the
`prior=` option of `RealNVP`).
"""

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from tfp_realnvp import made as made_lib
from tfp_realnvp import networks
from tfp_realnvp.bijectors import autoregressive
from tfp_realnvp.bijectors import cache

tfd = tfp.distributions

GAUSSIAN = "gaussian"


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
    latent_shapes: the per-scale latent shapes `(h, w, c)`, finest first
      (`RealNVP.latent_shapes`); needed by priors that treat the scales
      differently ('split', 'made').
  """

  # True: needs num_classes; False: must not have them; None: either.
  conditional = False

  def __init__(self, latent_dim, num_classes=None, latent_shapes=None,
               **kwargs):
    super().__init__(**kwargs)
    self.latent_dim = int(latent_dim)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.latent_shapes = (None if latent_shapes is None else
                          [tuple(int(d) for d in s) for s in latent_shapes])
    if self.latent_shapes is not None and sum(
        int(np.prod(s)) for s in self.latent_shapes) != self.latent_dim:
      raise ValueError(f"latent_shapes {self.latent_shapes} do not add up to "
                       f"latent_dim={self.latent_dim}")

  @classmethod
  def from_options(cls, options, **kwargs):
    """The prior of a model whose options are `options` (`RealNVP`'s
    attributes); `kwargs` are the common arguments. A prior with options of
    its own reads them here (`MADEPrior`: `made_hidden_units`)."""
    del options
    return cls(**kwargs)

  @property
  def split_networks(self):
    """Conditioners of the couplings the flow inserts before each
    factor-out (`SplitPrior`); none for other priors."""
    return []

  def _coarsest_size(self):
    if not self.latent_shapes:
      raise ValueError(f"{type(self).__name__} needs latent_shapes (the "
                       f"per-scale latent shapes, RealNVP.latent_shapes)")
    return int(np.prod(self.latent_shapes[-1]))

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
    config.update(latent_dim=self.latent_dim, num_classes=self.num_classes,
                  latent_shapes=(None if self.latent_shapes is None else
                                 [list(s) for s in self.latent_shapes]))
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


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class SplitPriorNet(keras.layers.Layer):
  """Conditioner of Glow's split prior: kept half `h [N, h, w, c]` ->
  `(s, t)` of the coupling `z -> z·exp(s) + t = (z − μ(h))·exp(−log σ(h))`,
  i.e. `s = −log σ`, `t = −μ·exp(−log σ)`; `μ`, `log σ` from one 3×3 conv
  initialised at zero (the prior starts as `N(0, I)`).

  Args:
    channels: `c`, channels of the kept and of the factored-out half.
    log_scale_clamp: `log σ = c·tanh(raw / c)`; `None`: unbounded.
  """

  def __init__(self, channels, log_scale_clamp=3.0, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self.log_scale_clamp = (None if log_scale_clamp is None else
                            float(log_scale_clamp))
    self.conv = keras.layers.Conv2D(
        2 * self.channels, 3, padding="same", kernel_initializer="zeros",
        bias_initializer="zeros", name="conv", dtype=self.dtype_policy)

  def build(self, input_shape):
    self.conv.build(input_shape)

  def loc_and_log_scale(self, h):
    mean, raw = tf.split(self.conv(h), 2, axis=-1)
    return mean, networks.soft_clamp(raw, self.log_scale_clamp)

  def call(self, h, training=False):
    del training
    mean, log_scale = self.loc_and_log_scale(h)
    return -log_scale, -mean * tf.exp(-log_scale)

  def get_config(self):
    config = super().get_config()
    config.update(channels=self.channels,
                  log_scale_clamp=self.log_scale_clamp)
    return config


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class SplitPrior(Prior):
  """Glow's learned split prior (module docstring): conditional Gaussians at
  every factor-out (`split_networks`, applied by the flow) and a learned
  (per-class, if `num_classes`) mean and log-scale of the coarsest latent.

  Args:
    latent_dim, num_classes, latent_shapes: as `Prior` (`latent_shapes`
      required).
    log_scale_clamp: of the split conditioners (`SplitPriorNet`).
  """

  conditional = None

  def __init__(self, latent_dim, num_classes=None, latent_shapes=None,
               log_scale_clamp=3.0, **kwargs):
    super().__init__(latent_dim, num_classes, latent_shapes, **kwargs)
    self.coarsest_size = self._coarsest_size()
    self.log_scale_clamp = log_scale_clamp
    self._split_networks = [
        SplitPriorNet(shape[2], log_scale_clamp, name=f"split_net_{i}",
                      dtype=self.dtype_policy)
        for i, shape in enumerate(self.latent_shapes[:-1])]

  @property
  def split_networks(self):
    return list(self._split_networks)

  def build(self, input_shape=None):
    for net, shape in zip(self._split_networks, self.latent_shapes[:-1]):
      net.build((None,) + tuple(shape))
    shape = ((self.num_classes,) if self.num_classes else ()) + (
        self.coarsest_size,)
    self.coarsest_loc = self.add_weight(name="coarsest_loc", shape=shape,
                                        initializer="zeros")
    self.coarsest_log_scale = self.add_weight(
        name="coarsest_log_scale", shape=shape, initializer="zeros")

  def loc_and_log_scale(self, labels):
    """`[D]` (or `[N, D]` with labels): zeros where the flow has already
    standardized the factored-out latents, then the coarsest part's."""
    loc, log_scale = self.coarsest_loc, self.coarsest_log_scale
    if self.num_classes:
      loc, log_scale = tf.gather(loc, labels), tf.gather(log_scale, labels)
    head = tf.zeros(tf.concat([tf.shape(loc)[:-1],
                               [self.latent_dim - self.coarsest_size]], 0),
                    loc.dtype)
    return (tf.concat([head, loc], axis=-1),
            tf.concat([head, log_scale], axis=-1))

  def get_config(self):
    config = super().get_config()
    config.update(log_scale_clamp=self.log_scale_clamp)
    return config


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class MADEPrior(Prior):
  """Autoregressive prior on the coarsest latent (module docstring):
  `ε = MAF(z)` on the last `h·w·c` entries of the flat latent (the other
  entries are already `N(0, I)`), `p(z) = N(ε; 0, I)·|det ∂ε/∂z|`.

  Args:
    latent_dim, num_classes, latent_shapes: as `Prior` (`latent_shapes`
      required); with `num_classes` the MADE embeds the label.
    hidden_units: the MADE's hidden layer widths.
    log_scale_clamp: the MADE's log-scale bound (`tfp_realnvp.made.MADE`).
  """

  conditional = None

  def __init__(self, latent_dim, num_classes=None, latent_shapes=None,
               hidden_units=(512, 512), log_scale_clamp=3.0, **kwargs):
    super().__init__(latent_dim, num_classes, latent_shapes, **kwargs)
    self.coarsest_size = self._coarsest_size()
    self.hidden_units = [int(u) for u in hidden_units]
    self.log_scale_clamp = log_scale_clamp
    self.made = made_lib.MADE(self.coarsest_size, self.hidden_units,
                              num_classes=self.num_classes,
                              log_scale_clamp=log_scale_clamp, name="made",
                              dtype=self.dtype_policy)

  @classmethod
  def from_options(cls, options, **kwargs):
    return cls(hidden_units=options.made_hidden_units, **kwargs)

  def build(self, input_shape=None):
    self.made.build()

  def bijector(self, labels=None):
    """`z -> ε`, the MAF on the coarsest block (one per call: the labels)."""
    return autoregressive.MaskedAutoregressiveAffine(self.made, labels)

  def distribution(self, labels=None, temperature=1.0):
    zeros = tf.zeros([self.latent_dim])
    base = gaussian(zeros, zeros + tf.math.log(tf.cast(temperature,
                                                       tf.float32)))
    return cache.TransformedDistribution(
        distribution=base, bijector=cache.Invert(self.bijector(labels)),
        name="MADEPrior")

  def standardize(self, z, labels=None):
    return self.bijector(labels).forward(z)

  def unstandardize(self, eps, labels=None):
    return self.bijector(labels).inverse(eps)

  def loc_and_log_scale(self, labels):
    raise NotImplementedError("the MADE prior is not a diagonal Gaussian")

  def call(self, labels):
    raise NotImplementedError("use distribution() / standardize()")

  def get_config(self):
    config = super().get_config()
    config.update(hidden_units=self.hidden_units,
                  log_scale_clamp=self.log_scale_clamp)
    return config


# `prior=` option of `RealNVP` -> class ('gaussian' resolves to one of the
# first two, `resolve`).
PRIORS = {"standard_normal": StandardNormalPrior,
          "class_conditional": ClassConditionalPrior,
          "split": SplitPrior,
          "made": MADEPrior}


def resolve(name, num_classes):
  """The `PRIORS` key of a `prior=` option: `None` or 'gaussian' is
  'class_conditional' with classes, else 'standard_normal'."""
  if name is None or name == GAUSSIAN:
    return "class_conditional" if num_classes else "standard_normal"
  return name

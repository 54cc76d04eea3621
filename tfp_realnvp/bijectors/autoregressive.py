"""Masked autoregressive affine flow (MAF; Papamakarios et al., 2017) on a
block of a flat latent, with a MADE conditioner (`tfp_realnvp.made`).

Direction convention of this package: `forward` normalizes.

```
  forward  (one MADE pass):     ε_i = (z_i − μ_i(z_<i)) · exp(−α_i(z_<i))
  log|det ∂ε/∂z|:               −Σ_i α_i(z_<i)          (triangular Jacobian)
  inverse  (d sequential passes): z_i = ε_i · exp(α_i(z_<i)) + μ_i(z_<i)
```

Only the last `block_size` entries of the flat `[..., D]` vector are
transformed (the coarsest latent of the multi-scale flow); the rest pass
through. The inverse runs the MADE `d = block_size` times in a
`tf.while_loop`: after pass `k` the first `k` dimensions in the order are
exact, so after `d` passes all are (then one more pass gives the log-det
at the result). That is what makes sampling from an autoregressive prior
sequential.

TFP's `tfb.MaskedAutoregressiveFlow` implements the same transform, but its
`log_prob` path runs the conditioner twice (once for the value, once for the
log-det, on the same input) and its cache is keyed on the bijector's
parameters, which here would be a Keras layer whose weights change; this
bijector computes value and log-det in one pass and caches for one
evaluation only (`cache.py`).
"""

import tensorflow as tf

from tfp_realnvp.bijectors import _util
from tfp_realnvp.bijectors._one_pass import OnePassBijector


class MaskedAutoregressiveAffine(OnePassBijector):
  """Affine MAF on the last `made.event_size` entries of `[..., D]`.

  Args:
    made: a built `tfp_realnvp.made.MADE` (`shift, log_scale = made(z,
      labels)`).
    labels: `None`, or int labels `[N]` of a class-conditional MADE (the
      batch of the inputs must then be `[N]`).
    name: bijector name.
  """

  def __init__(self, made, labels=None, validate_args=False,
               name="masked_autoregressive_affine"):
    parameters = dict(locals())
    self._made = made
    self._labels = labels
    self._size = int(made.event_size)
    super().__init__(forward_min_event_ndims=1, validate_args=validate_args,
                     parameters=parameters, name=name)

  @property
  def made(self):
    return self._made

  def _split(self, x):
    if x.shape[-1] is not None and x.shape[-1] < self._size:
      raise ValueError(f"{self.name}: the latent has {x.shape[-1]} entries, "
                       f"fewer than the autoregressive block "
                       f"({self._size})")
    rest = (x.shape[-1] - self._size if x.shape[-1] is not None else
            tf.shape(x)[-1] - self._size)
    return x[..., :rest], x[..., rest:]

  def _params(self, block):
    shift, log_scale = self._made(block, self._labels)
    return tf.cast(shift, block.dtype), tf.cast(log_scale, block.dtype)

  def _augmented_forward(self, x):
    flat, batch_shape = _util.flatten_batch(x, event_ndims=1)
    head, block = self._split(flat)
    shift, log_scale = self._params(block)
    eps = (block - shift) * tf.exp(-log_scale)
    fldj = -tf.reduce_sum(log_scale, axis=-1)
    y = tf.concat([head, eps], axis=-1)
    return (_util.unflatten_batch(y, batch_shape, event_ndims=1),
            _util.unflatten_scalar(fldj, batch_shape))

  def _augmented_inverse(self, y):
    flat, batch_shape = _util.flatten_batch(y, event_ndims=1)
    head, eps = self._split(flat)

    def body(i, z):
      shift, log_scale = self._params(z)
      return i + 1, eps * tf.exp(log_scale) + shift

    _, z = tf.while_loop(lambda i, _: i < self._size, body,
                         (tf.constant(0), tf.zeros_like(eps)),
                         maximum_iterations=self._size)
    # A last pass: the log-det at the result (and z again, now exact).
    shift, log_scale = self._params(z)
    z = eps * tf.exp(log_scale) + shift
    ildj = tf.reduce_sum(log_scale, axis=-1)
    x = tf.concat([head, z], axis=-1)
    return (_util.unflatten_batch(x, batch_shape, event_ndims=1),
            _util.unflatten_scalar(ildj, batch_shape))

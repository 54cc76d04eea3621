"""A `tfb.Chain` that also walks its parts once, for value and log-det.

`tfb.Chain` computes a log-det by walking its parts a second time and asking
each for its own, with TFP's event-rank and shape bookkeeping per part and
per nested composite (`tfb.JointMap`, `tfb.Invert`, `tfb.Split` of the
factor-outs): ~15% of the graph ops of a traced `log_prob`, more of its
gradient, in every function a model traces (fit, evaluate, sampling, scores,
export). A flow of images `[..., H, W, C]` to flat latents `[..., D]` knows
its parts and their event ranks, so `OnePassChain` keeps them once more as a
flat `path` (data -> latent order) and, for the calls
`TransformedDistribution` makes (no kwargs, the minimal event rank, no
`validate_args`), computes value and log-det in one walk and keeps both for
the evaluation (`cache.memo()`): `inverse` then `inverse_log_det_jacobian`
on the same tensor, or `forward` then a log-det of its output, is one pass.
Every other call takes the Chain's own path.

```
  path entry              forward (data -> latent)          log-det
  (ONE_PASS, b)           b._augmented_forward(h)           its own, per event
  (PERMUTATION, b)        b.forward(h)                      0
  (ELEMENTWISE, b)        b.forward(h)                      b's over the 3 event axes
  (SPLIT, (H, W, C))      first C//2 channels -> latent     0
  (FLATTEN, (H, W, C))    what is left -> latent            0
                          z = concat(latents, -1)
```

The log-dets are added in the Chain's order (latent -> data, as its inverse
walk does), so a flow keeps the bits of its log-density;
tests/test_structure.py checks the walk against the Chain of the same parts.
"""

import numpy as np
import tensorflow as tf

from tfp_realnvp.bijectors import cache

ONE_PASS = "one_pass"        # ours: `_augmented_forward` / `_augmented_inverse`
PERMUTATION = "permutation"  # volume preserving: log-det 0
ELEMENTWISE = "elementwise"  # any bijector of rank-3 events
SPLIT = "split"              # half the channels leave as a latent part
FLATTEN = "flatten"          # the rest leaves as the last latent part


class OnePassChain(cache.Chain):
  """`cache.Chain(bijectors)` with a one-pass walk over `path`.

  Args:
    bijectors: the Chain's parts (its structure: `bijectors`, and every call
      the walk does not take).
    path: the same map as `(kind, bijector or event shape)` entries, data ->
      latent order (table above); it must end with `FLATTEN`.
    event_shape_in: `(H, W, C)` of the data side.
  """

  def __init__(self, bijectors, path, event_shape_in, validate_args=False,
               parameters=None, name=None):
    self._path = list(path)
    if not self._path or self._path[-1][0] != FLATTEN:
      raise ValueError("a OnePassChain path ends with a FLATTEN entry")
    self._event_shape_in = tuple(int(d) for d in event_shape_in)
    self._latent_parts = [
        (part[0], part[1], part[2] // 2) if kind == SPLIT else tuple(part)
        for kind, part in self._path if kind in (SPLIT, FLATTEN)]
    super().__init__(bijectors, validate_args=validate_args,
                     parameters=parameters, name=name)

  def _one_pass(self, value, forward):
    """`(output, log-det of this direction)` of `value`, per event; the
    output's entry for the other direction negates the log-det only when
    it is asked for."""
    memo = cache.memo()
    hit = memo.get((id(self), forward, id(value)))
    if hit is not None and hit[0] is value:
      _, out, ldj, negate = hit
      return out, (-ldj if negate else ldj)
    walk = self._pass_forward if forward else self._pass_inverse
    out, ldj = walk(value)
    memo[(id(self), forward, id(value))] = (value, out, ldj, False)
    memo[(id(self), not forward, id(out))] = (out, value, ldj, True)
    return out, ldj

  def _one_pass_call(self, value, name, forward):
    """`_one_pass` of a public call: one evaluation, TFP's name scope."""
    with cache.evaluation(), self._name_and_control_scope(name):
      return self._one_pass(
          tf.convert_to_tensor(value, name="x" if forward else "y"), forward)

  def _pass_forward(self, x):
    batch = tf.shape(x)[:-3]
    latents, ildj, h = [], [], x
    for kind, part in self._path:
      if kind == ONE_PASS:
        with tf.name_scope(part.name):  # (named for profiles; no op)
          h, fldj = part._augmented_forward(h)  # pylint: disable=protected-access
        ildj.append(-fldj)
      elif kind == PERMUTATION:
        h = part.forward(h)
      elif kind == ELEMENTWISE:
        h = part.forward(h)
        ildj.append(part.inverse_log_det_jacobian(h, event_ndims=3))
      elif kind == SPLIT:
        half = part[2] // 2
        out, h = tf.split(h, [half, part[2] - half], axis=-1)
        latents.append(_flat(out, batch, part[0] * part[1] * half))
      else:  # FLATTEN
        latents.append(_flat(h, batch, int(np.prod(part))))
    return tf.concat(latents, axis=-1), -_sum(ildj[::-1], x.dtype, batch)

  def _pass_inverse(self, z):
    batch = tf.shape(z)[:-1]
    sizes = [int(np.prod(s)) for s in self._latent_parts]
    latents = tf.split(z, sizes, axis=-1)
    shapes = list(self._latent_parts)
    ildj, h = [], None
    for kind, part in reversed(self._path):
      if kind == ONE_PASS:
        with tf.name_scope(part.name):
          h, part_ildj = part._augmented_inverse(h)  # pylint: disable=protected-access
        ildj.append(part_ildj)
      elif kind == PERMUTATION:
        h = part.inverse(h)
      elif kind == ELEMENTWISE:
        ildj.append(part.inverse_log_det_jacobian(h, event_ndims=3))
        h = part.inverse(h)
      else:  # a latent part enters: the last scale's, then factored-out ones
        shape = shapes.pop()
        part_h = tf.reshape(latents.pop(),
                            tf.concat([batch, list(shape)], axis=0))
        h = part_h if kind == FLATTEN else tf.concat([part_h, h], axis=-1)
    return h, _sum(ildj, z.dtype, batch)

  def _takes_one_pass(self, kwargs, event_ndims=None, min_event_ndims=None):
    if kwargs or self.validate_args:
      return False
    if event_ndims is None:
      return True
    return tf.get_static_value(event_ndims) == min_event_ndims

  def _call_forward(self, x, name, **kwargs):
    if not self._takes_one_pass(kwargs):
      return super()._call_forward(x, name, **kwargs)
    return self._one_pass_call(x, name, True)[0]

  def _call_inverse(self, y, name, **kwargs):
    if not self._takes_one_pass(kwargs):
      return super()._call_inverse(y, name, **kwargs)
    return self._one_pass_call(y, name, False)[0]

  def _call_forward_log_det_jacobian(self, x, event_ndims, name, **kwargs):
    if not self._takes_one_pass(kwargs, event_ndims, 3):
      return super()._call_forward_log_det_jacobian(x, event_ndims, name,
                                                    **kwargs)
    return self._one_pass_call(x, name, True)[1]

  def _call_inverse_log_det_jacobian(self, y, event_ndims, name, **kwargs):
    if not self._takes_one_pass(kwargs, event_ndims, 1):
      return super()._call_inverse_log_det_jacobian(y, event_ndims, name,
                                                    **kwargs)
    return self._one_pass_call(y, name, False)[1]

  def _forward_event_shape_tensor(self, input_shape, **kwargs):
    return tf.constant([int(np.prod(self._event_shape_in))], tf.int32)

  def _inverse_event_shape_tensor(self, output_shape, **kwargs):
    return tf.constant(self._event_shape_in, tf.int32)


def _flat(h, batch, size):
  """`[*batch, h, w, c]` -> `[*batch, size]`."""
  return tf.reshape(h, tf.concat([batch, [size]], axis=0))


def _sum(ildjs, dtype, batch):
  """The inverse log-dets of the parts, latent -> data order, added in that
  order: `tfb.Chain`'s order, so a flow keeps the bits of its log-density
  (an `AddN` of up to 8 terms adds left to right; of more, not). Scalar
  terms (actnorm's, the 1×1 convolution's) are broadcast to the batch."""
  terms = [d if d.shape.rank else tf.broadcast_to(d, batch) for d in ildjs]
  if not terms:
    return tf.zeros(batch, dtype)
  total, rest = terms[0], terms[1:]
  while rest:
    total = tf.add_n([total] + rest[:7]) if rest[1:] else total + rest[0]
    rest = rest[7:]
  return total

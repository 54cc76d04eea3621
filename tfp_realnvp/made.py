"""MADE: the masked autoencoder for distribution estimation (Germain et al.,
ICML 2015), written in Keras 3.

A MADE maps `z ∈ R^d` to `d` outputs per parameter (here a shift `μ` and a
log-scale `α`) such that output `i` depends only on the inputs that come
before `i` in the ordering, so that

```
  p(z) = Π_i N(z_i; μ_i(z_<i), exp(α_i(z_<i))²)
```

is a valid autoregressive density, evaluated in one pass. The connectivity
is given by degrees (Germain et al. §4):

```
  input  unit i (1-based position in the order):  m(i) = i
  hidden unit k of every hidden layer:            m(k) ∈ {1, ..., d-1}
  hidden mask   M[k_in, k_out] = 1  iff  m(k_out) >= m(k_in)    (eq. 12)
  output mask   M[k, i]        = 1  iff  m(i)     >  m(k)       (eq. 13)
```

Hidden degrees are assigned deterministically and evenly (`k mod (d-1) + 1`,
as TFP's `AutoregressiveNetwork` does with `hidden_degrees='equal'`), so a
saved model needs no random state to rebuild its masks. TFP's own
`tfb.AutoregressiveNetwork` is a tf_keras layer: a Keras 3 model does not
track its variables, which is why this module exists.

A class-conditional MADE adds a learned embedding of the label to the first
hidden layer's pre-activation: the label is not one of the autoregressive
inputs, so every unit may see it.
"""

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import networks


def input_degrees(event_size, order="left-to-right"):
  """Degrees `1..d` of the inputs: `order` 'left-to-right' or
  'right-to-left' (the two orders MADE usually alternates)."""
  degrees = np.arange(1, event_size + 1)
  if order == "right-to-left":
    return degrees[::-1].copy()
  if order != "left-to-right":
    raise ValueError(f"order must be 'left-to-right' or 'right-to-left', got "
                     f"{order!r}")
  return degrees


def hidden_degrees(units, event_size):
  """Evenly spread degrees in `[1, d-1]` for `units` hidden units."""
  if event_size < 2:
    return np.ones(units, np.int64)
  return np.arange(units) % (event_size - 1) + 1


def masks(event_size, hidden_units, params=2, order="left-to-right"):
  """The 0/1 masks of every layer (float32 `[in, out]`), input to output.

  The last mask has `params * event_size` columns: column `p * d + i` is
  parameter `p` of dimension `i`.
  """
  degrees = [input_degrees(event_size, order)]
  result = []
  for units in hidden_units:
    out = hidden_degrees(units, event_size)
    result.append((out[None, :] >= degrees[-1][:, None]).astype(np.float32))
    degrees.append(out)
  out = np.tile(degrees[0], params)
  result.append((out[None, :] > degrees[-1][:, None]).astype(np.float32))
  return result


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class MaskedDense(keras.layers.Layer):
  """A dense layer whose kernel is multiplied by a fixed 0/1 mask.

  Args:
    mask: `[in, out]` array of 0/1 (a constant of the layer, rebuilt from
      the config; not a variable).
    zero_init: zero kernel and bias (the last layer of a flow's MADE, so
      the flow starts as the identity).
  """

  def __init__(self, mask, zero_init=False, **kwargs):
    super().__init__(**kwargs)
    self.mask = np.asarray(mask, np.float32)
    if self.mask.ndim != 2:
      raise ValueError(f"mask must be [in, out], got shape {self.mask.shape}")
    self.zero_init = bool(zero_init)
    self.units = int(self.mask.shape[1])

  def build(self, input_shape):
    if input_shape[-1] != self.mask.shape[0]:
      raise ValueError(f"{self.name}: mask expects {self.mask.shape[0]} "
                       f"inputs, got shape {input_shape}")
    self.kernel = self.add_weight(
        name="kernel", shape=self.mask.shape,
        initializer="zeros" if self.zero_init else "glorot_uniform")
    self.bias = self.add_weight(name="bias", shape=(self.units,),
                                initializer="zeros")

  def call(self, x):
    kernel = self.kernel * tf.constant(self.mask, self.kernel.dtype)
    return tf.matmul(x, kernel) + self.bias

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.units,)

  def get_config(self):
    config = super().get_config()
    config.update(mask=self.mask.tolist(), zero_init=self.zero_init)
    return config


@keras.saving.register_keras_serializable(package="tfp_realnvp")
class MADE(keras.layers.Layer):
  """Shift and log-scale of an affine autoregressive transform.

  `shift, log_scale = made(z, labels)`, each `[N, d]`, where output `i`
  depends only on `z_j` with `j` before `i` in `order` (and on the label).

  Args:
    event_size: `d`.
    hidden_units: widths of the hidden layers, e.g. `(512, 512)`.
    num_classes: `None`, or the classes of a label embedding added to the
      first hidden layer.
    order: 'left-to-right' or 'right-to-left'.
    log_scale_clamp: `c > 0`: the log-scale is `c·tanh(raw / c)`, bounded in
      `(-c, c)` (a large scale in the generative direction makes sampling
      explode); `None`: unbounded.
    activation: of the hidden layers.
  """

  def __init__(self, event_size, hidden_units=(512, 512), num_classes=None,
               order="left-to-right", log_scale_clamp=3.0,
               activation="relu", **kwargs):
    super().__init__(**kwargs)
    self.event_size = int(event_size)
    self.hidden_units = [int(u) for u in hidden_units]
    if self.event_size < 1 or not self.hidden_units or min(
        self.hidden_units) < 1:
      raise ValueError(f"MADE needs event_size >= 1 and at least one hidden "
                       f"layer of >= 1 unit, got event_size={event_size}, "
                       f"hidden_units={hidden_units!r}")
    self.num_classes = None if num_classes is None else int(num_classes)
    self.order = order
    self.log_scale_clamp = (None if log_scale_clamp is None else
                            float(log_scale_clamp))
    self.activation = activation
    all_masks = masks(self.event_size, self.hidden_units, 2, order)
    self.hidden = [MaskedDense(m, name=f"masked_dense_{i}", dtype=self.dtype_policy)
                   for i, m in enumerate(all_masks[:-1])]
    self.out = MaskedDense(all_masks[-1], zero_init=True, name="masked_out",
                           dtype=self.dtype_policy)
    self.embedding = None
    if self.num_classes:
      self.embedding = keras.layers.Embedding(
          self.num_classes, self.hidden_units[0], embeddings_initializer="zeros",
          name="class_embedding", dtype=self.dtype_policy)
    self._act = keras.activations.get(activation)

  def build(self, input_shape=None):
    width = self.event_size
    for layer in self.hidden:
      layer.build((None, width))
      width = layer.units
    self.out.build((None, width))
    if self.embedding is not None:
      self.embedding.build((None,))

  def call(self, z, labels=None):
    h = z
    for i, layer in enumerate(self.hidden):
      h = layer(h)
      if i == 0 and self.embedding is not None:
        if labels is None:
          raise ValueError(f"{self.name} is class-conditional: pass labels")
        h = h + self.embedding(labels)
      h = self._act(h)
    params = self.out(h)
    shift, raw = tf.split(params, 2, axis=-1)
    return shift, networks.soft_clamp(raw, self.log_scale_clamp)

  def get_config(self):
    config = super().get_config()
    config.update(event_size=self.event_size, hidden_units=self.hidden_units,
                  num_classes=self.num_classes, order=self.order,
                  log_scale_clamp=self.log_scale_clamp,
                  activation=self.activation)
    return config

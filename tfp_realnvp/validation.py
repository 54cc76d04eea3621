"""Input checks shared by `RealNVP` and its TF Serving export.

Every check has two parts:

- **static** (Python, at call or trace time): container type, dtype, and
  the static shape. These raise `TypeError`/`ValueError` and work under any
  compilation, XLA included.
- **values** (graph asserts, `tf.debugging.Assert`): rank and dimensions
  when only known at run time (serving), a non-empty batch, NaN/inf, the
  pixel range [0, 256], label range, one label per row, and a finite
  positive temperature. Eagerly they raise at once; in a graph they raise
  `InvalidArgumentError` with the same message (TF Serving answers it as
  INVALID_ARGUMENT).

XLA drops `Assert` ops: inside a `jit_compile=True` function the value
checks would be silent. `RealNVP.fit/evaluate/predict` therefore run
these checks in the input pipeline (outside XLA) whenever the model is
compiled with XLA, so the same message is raised there; a function you
compile with XLA yourself gets the static checks only (validate its inputs
before calling it, e.g. with `check_images`).

Every message names what was expected: the shape, the dtype or the range.
"""

import numpy as np
import tensorflow as tf

PIXEL_RANGE = "[0, 256]"
# Plain graph code: AutoGraph need not (and should not) rewrite it.
_plain = tf.autograph.experimental.do_not_convert


def _shape_text(dims):
  return "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"


def _reject_containers(value, what, expected):
  if isinstance(value, (list, tuple)):
    n = len(value)
    raise ValueError(
        f"expected {what} as one tensor of shape {expected}; got a "
        f"{type(value).__name__} of {n} element{'s' if n != 1 else ''}. "
        f"Stack the examples first (np.stack / tf.stack); a class-"
        f"conditional model takes (images, labels) as a pair")


def _assert_shape(tensor, dims, what):
  """Run-time rank and dimension check, safe for any rank."""
  expected = _shape_text(dims)
  shape = tf.shape(tensor, out_type=tf.int64)
  rank = tf.size(shape)
  # Pad so that comparing with `dims` never fails on a wrong rank.
  padded = tf.concat([shape, tf.fill([len(dims)], tf.constant(-1, tf.int64))],
                     axis=0)[:len(dims)]
  fixed = [i for i, d in enumerate(dims) if d is not None]
  ok = tf.equal(rank, len(dims))
  if fixed:
    want = tf.constant([dims[i] for i in fixed], tf.int64)
    ok = tf.logical_and(ok, tf.reduce_all(tf.equal(
        tf.gather(padded, fixed), want)))
  return tf.debugging.Assert(
      ok, [f"{what} must have shape {expected}; got shape", shape],
      name=f"check_{what}_shape")


def _assert_nonempty(tensor, what, expected):
  return tf.debugging.Assert(
      tf.greater(tf.shape(tensor)[0], 0),
      [f"{what} must hold at least one example (N >= 1) of shape "
       f"{expected}; got an empty batch of shape", tf.shape(tensor)],
      name=f"check_{what}_nonempty")


@_plain
def assert_shape(tensor, dims, what):
  """Run-time asserts (ops) that `tensor` has shape `dims` (`None`: any
  size) and at least one row; for inputs whose shape only the graph sees."""
  return [_assert_shape(tensor, dims, what),
          _assert_nonempty(tensor, what, _shape_text(dims))]


def _check_static_shape(tensor, dims, what, meaning):
  expected = _shape_text(dims)
  if not tensor.shape.is_compatible_with(dims):
    raise ValueError(f"expected {what} of shape {expected} {meaning}, got "
                     f"shape {tensor.shape}")
  if tensor.shape.rank is not None and tensor.shape[0] == 0:
    raise ValueError(f"{what} must hold at least one example (N >= 1) of "
                     f"shape {expected}; got shape {tensor.shape}")


def _checked(tensor, dims, what, value_checks=None):
  """`tensor` after its run-time shape asserts, then `value_checks(t)`."""
  tensor = _with(assert_shape(tensor, dims, what), tensor)
  if value_checks is not None:
    tensor = _with(value_checks(tensor), tensor)
  return tf.ensure_shape(tensor, dims)


def _with(checks, tensor):
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


@_plain
def image_value_checks(images):
  """The NaN/inf and [0, 256] asserts on float images (list of ops)."""
  finite = tf.debugging.Assert(
      tf.reduce_all(tf.math.is_finite(images)),
      ["images contain NaN or inf; expected dequantized pixel values in "
       f"{PIXEL_RANGE}"], name="check_images_finite")
  with tf.control_dependencies([finite]):
    low, high = tf.reduce_min(images), tf.reduce_max(images)
    below = tf.debugging.Assert(
        low >= 0.0,
        [f"images must be dequantized pixel values in {PIXEL_RANGE}; found "
         "a value below 0: min", low], name="check_images_below")
    above = tf.debugging.Assert(
        high <= 256.0,
        [f"images must be dequantized pixel values in {PIXEL_RANGE}; found "
         "a value above 256 (not yet in pixel units, or scaled "
         "differently?): max", high], name="check_images_above")
  return [finite, below, above]


@_plain
def check_images(images, image_shape, check_values=True, allow_uint8=False):
  """Checked images `[N, H, W, C]`: float32 (or uint8 if allowed).

  Args:
    images: a tensor or array of dequantized pixel values.
    image_shape: `(H, W, C)` the model expects.
    check_values: add the run-time asserts (shape, non-empty, finite,
      range); `False` keeps the static checks only.
    allow_uint8: accept uint8 pixels (the `log_prob_uint8` signature).
  """
  dims = [None] + [int(d) for d in image_shape]
  expected = _shape_text(dims)
  _reject_containers(images, "images", expected)
  images = tf.convert_to_tensor(images)
  if images.dtype == tf.uint8 and allow_uint8:
    pass
  elif not images.dtype.is_floating:
    raise TypeError(
        f"expected float32 images of dequantized pixel values in "
        f"{PIXEL_RANGE}, shape {expected}; got dtype {images.dtype.name}. "
        f"Dequantize integer pixels first, e.g. tf.cast(pixels, tf.float32) "
        f"+ tf.random.uniform(tf.shape(pixels))")
  else:
    images = tf.cast(images, tf.float32)
  _check_static_shape(images, dims, "images",
                      "(batch, height, width, channels)")
  if not check_values:
    return images
  return _checked(images, dims, "images",
                  None if images.dtype == tf.uint8 else image_value_checks)


@_plain
def check_latents(latents, event_size, check_values=True):
  """Checked float32 latents `[N, D]` (finite when `check_values`)."""
  dims = [None, int(event_size)]
  expected = _shape_text(dims)
  _reject_containers(latents, "latents", expected)
  latents = tf.convert_to_tensor(latents)
  if not latents.dtype.is_floating:
    raise TypeError(f"expected float32 latents of shape {expected}, got "
                    f"dtype {latents.dtype.name}")
  latents = tf.cast(latents, tf.float32)
  _check_static_shape(latents, dims, "latents", "(D = H*W*C)")
  if not check_values:
    return latents

  def finite(t):
    return [tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(t)),
        [f"latent contains NaN or inf; expected finite values of shape "
         f"{expected}"], name="check_latent_finite")]

  return _checked(latents, dims, "latent", finite)


@_plain
def check_rows(tensor, rows, what):
  """Asserts one entry of `tensor` per example (`rows` of them)."""
  n = tf.shape(tensor)[0]
  static_n = tensor.shape[0] if tensor.shape.rank else None
  static_rows = tf.get_static_value(rows)
  if static_n is not None and static_rows is not None and \
      int(static_n) != int(static_rows):
    raise ValueError(f"{what} must have one row per example: got {static_n} "
                     f"for {int(static_rows)} examples")
  ok = tf.equal(n, tf.cast(rows, n.dtype))
  return _with([tf.debugging.Assert(
      ok, [f"{what} must have one row per example (the same N as the other "
           f"inputs); got", n, "rows, expected", rows],
      name="check_rows")], tensor)


@_plain
def check_labels(labels, num_classes, rows=None, check_values=True):
  """Checked int32 labels `[N]` in `[0, num_classes)`, one per example."""
  expected = f"integers in [0, {num_classes})"
  if labels is None:
    raise ValueError(f"this model is class-conditional (num_classes="
                     f"{num_classes}); pass labels: {expected}, shape [N]")
  labels = tf.convert_to_tensor(labels)
  if not labels.dtype.is_integer:
    raise TypeError(f"labels must be {expected}, got dtype "
                    f"{labels.dtype.name}")
  labels = tf.cast(labels, tf.int32)
  if labels.shape.rank is not None and labels.shape.rank != 1:
    raise ValueError(f"labels must have shape [N] ({expected}), got shape "
                     f"{labels.shape}")
  if rows is not None:
    labels = check_rows(labels, rows, "labels")
  if not check_values:
    return labels
  ok = tf.logical_and(tf.reduce_all(labels >= 0),
                      tf.reduce_all(labels < num_classes))
  return _with([tf.debugging.Assert(
      ok, [f"labels must be {expected}; got", labels],
      name="check_labels_range")], labels)


@_plain
def check_temperature(temperature, rows=None):
  """A finite temperature > 0: a Python number is checked at once; a
  tensor (scalar, or `[N]` with `rows`) gets a graph assert."""
  if isinstance(temperature, (int, float, np.integer, np.floating)) and \
      not isinstance(temperature, bool):
    if not np.isfinite(temperature) or temperature <= 0:
      raise ValueError(f"temperature must be finite and > 0, got "
                       f"{temperature}")
    return tf.constant(temperature, tf.float32)
  temperature = tf.cast(tf.convert_to_tensor(temperature), tf.float32)
  if rows is not None:
    temperature = check_rows(tf.reshape(temperature, [-1]), rows,
                             "temperature")
  ok = tf.reduce_all(tf.logical_and(temperature > 0.0,
                                    tf.math.is_finite(temperature)))
  return _with([tf.debugging.Assert(
      ok, ["temperature must be finite and > 0; got", temperature],
      name="check_temperature")], temperature)


@_plain
def check_levels(images, check_values=True):
  """Integer pixel levels 0..255 as float32 (from float or uint8), for a
  model that dequantizes."""
  images = tf.cast(images, tf.float32)
  if not check_values:
    return images
  whole = tf.debugging.Assert(
      tf.reduce_all(tf.logical_and(tf.equal(images, tf.floor(images)),
                                   images <= 255.0)),
      ["this model dequantizes its inputs (dequantizer=...): expected "
       "integer pixel levels 0..255, found a fractional value or one above "
       "255: max", tf.reduce_max(images)], name="check_levels")
  return _with([whole], images)


def check_positive_int(name, value, allow_zero=False):
  """Raises a `ValueError` unless `value` is an int >= 1 (>= 0)."""
  lowest = 0 if allow_zero else 1
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or \
      value < lowest:
    raise ValueError(f"{name} must be an integer >= {lowest}, got {value!r}")
  return int(value)


def check_hidden_units(name, value):
  """A non-empty list of positive ints (layer widths), else `ValueError`."""
  try:
    units = [int(u) for u in value]
    ok = bool(units) and all(u >= 1 and u == w for u, w in zip(units, value))
  except (TypeError, ValueError):
    ok = False
  if not ok:
    raise ValueError(f"{name} must be a non-empty list of positive integers "
                     f"(hidden layer widths), got {value!r}")
  return units


def check_choice(name, value, choices):
  """Raises a `ValueError` unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {tuple(choices)}, got "
                     f"{value!r}")
  return value


def unpack_inputs(inputs, image_shape, num_classes):
  """`x` or `(x, labels)` -> `(images, labels or None)`, by the model kind."""
  if isinstance(inputs, (tuple, list)):
    shape = ", ".join(map(str, image_shape))
    if not num_classes:
      raise ValueError(
          f"this model is unconditional (num_classes=None): pass images "
          f"as one tensor of shape [N, {shape}]; got a "
          f"{type(inputs).__name__} of {len(inputs)} elements (a list of "
          f"images? stack them with np.stack; (images, labels) pairs are "
          f"for class-conditional models)")
    if len(inputs) != 2:
      raise ValueError(f"expected (images, labels) for this class-"
                       f"conditional model, got a {type(inputs).__name__} "
                       f"of {len(inputs)} elements")
    return inputs[0], inputs[1]
  if num_classes:
    raise ValueError(
        f"this model is class-conditional (num_classes={num_classes}) "
        f"and needs (images, labels) as its input. With a tf.data dataset "
        f"of (images, labels) pairs for fit, map it to "
        f"((images, labels),) so Keras passes both as x")
  return inputs, None


def checked_outside_xla(data, image_shape, num_classes, levels=False):
  """Input value checks that survive `jit_compile=True`.

  XLA drops the graph asserts of this module, so a model compiled with XLA
  (`compile(jit_compile=True)`, or Keras' `auto` on GPU/TPU) has NaN, inf,
  out-of-range pixels and out-of-range labels checked outside the compiled
  step, with the same messages: arrays and tensors once, in a traced
  function; a `tf.data.Dataset` by a map step. (Python generators and
  `PyDataset`s are checked by the graph path only, so not under XLA.)
  Shapes and dtypes are checked at trace time either way. `levels`: the
  images are integer levels (a model with a dequantizer).
  """

  def component(value):
    if not isinstance(value, (np.ndarray, tf.Tensor)):
      return value
    value = tf.convert_to_tensor(value)
    if (value.dtype.is_floating or levels and value.dtype == tf.uint8) and \
        value.shape.rank == 4:
      value = check_images(value, image_shape, allow_uint8=levels)
      if levels:
        value = check_levels(value)
    elif num_classes and value.dtype.is_integer and value.shape.rank == 1:
      value = check_labels(value, num_classes)
    return value

  if data is None:
    return data
  if isinstance(data, tf.data.Dataset):
    if isinstance(data.element_spec, tuple):
      return data.map(lambda *parts: tuple(
          tf.nest.map_structure(component, parts)))
    return data.map(lambda element: tf.nest.map_structure(component, element))
  if isinstance(data, (np.ndarray, tf.Tensor, tuple, list, dict)):
    # Traced, so the message is worded as on the graph path.
    tf.function(lambda d: tf.nest.map_structure(component, d),
                autograph=False)(data)
  return data


def check_sample_temperature(temperature, num_samples):
  """`check_temperature`; one per sample (`[num_samples]`) is returned as
  `[num_samples, 1]`, to scale latents `[num_samples, D]`."""
  temperature = check_temperature(temperature)
  if temperature.shape.rank:
    temperature = check_rows(temperature, num_samples, "temperature")[:, None]
  return temperature


def check_optional_labels(labels, num_classes, rows=None, check_values=True):
  """`None` for an unconditional model (a `ValueError` if labels were given
  anyway), else `check_labels`."""
  if not num_classes:
    if labels is not None:
      raise ValueError("labels were given to an unconditional model "
                       "(num_classes=None)")
    return None
  return check_labels(labels, num_classes, rows=rows,
                      check_values=check_values)


def check_one_class(labels, num_classes, check_values=True):
  """The single class (scalar int tensor) `interpolate` takes."""
  if not num_classes:
    raise ValueError("labels were given to an unconditional model "
                     "(num_classes=None)")
  if labels is None or np.ndim(labels) != 0:
    raise ValueError(
        f"interpolate on a class-conditional model needs labels=k, one "
        f"class (an integer in [0, {num_classes})) for all four images; got "
        f"labels={labels!r}")
  return check_labels(tf.reshape(labels, [1]), num_classes,
                      check_values=check_values)[0]

"""Small shared helpers for the image bijectors (internal)."""

import tensorflow as tf


def flatten_batch(x, event_ndims=3):
  """Reshapes `x` of shape `batch_shape + event_shape` to `[-1] + event_shape`.

  Convolutions need exactly one batch dimension; TFP hands bijectors any
  number of them (none for `dist.sample()`, two for `dist.sample([2, 3])`).
  Returns the flat tensor and the batch shape (a tensor) to restore later,
  or `x` itself and `None` when it has exactly one batch dimension already
  (the usual case: no reshape ops in the graph).
  """
  if has_single_batch_dim(x, event_ndims):
    return x, None
  shape = tf.shape(x)
  rank = tf.rank(x)
  batch_shape = shape[:rank - event_ndims]
  event_shape = x.shape[-event_ndims:]
  if event_shape.is_fully_defined():
    flat_shape = [-1] + event_shape.as_list()
  else:
    flat_shape = tf.concat([[-1], shape[rank - event_ndims:]], axis=0)
  return tf.reshape(x, flat_shape), batch_shape


def unflatten_batch(x, batch_shape, event_ndims=3):
  """Inverse of `flatten_batch` for a tensor with the same event rank."""
  if batch_shape is None:
    return x
  return tf.reshape(
      x, tf.concat([batch_shape, tf.shape(x)[1:1 + event_ndims]], axis=0))


def unflatten_scalar(v, batch_shape):
  """Restores the batch shape of a per-event quantity (e.g. a log-det)."""
  return v if batch_shape is None else tf.reshape(v, batch_shape)


def has_single_batch_dim(x, event_ndims=3):
  """True when `x` is statically known to be `[N] + event_shape`."""
  return x.shape.rank == event_ndims + 1

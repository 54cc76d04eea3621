"""The pipeline stages every source of `training/data.py` ends with: cache,
shuffle, flip, dequantize, batch and prefetch (`finish`), the rule for a
training split smaller than one batch (`partial_batches`) and the image
shape check (`check_shape`)."""

import tensorflow as tf

from tfp_realnvp import dequantization
from training import console

AUTOTUNE = tf.data.AUTOTUNE
_MAX_NOISE = dequantization.MAX_NOISE  # k + u stays below k + 1 in float32


def finish(ds, *, training, batch_size, seed, flip, conditional, cache,
           shuffle_buffer, deterministic, partial_batches=False,
           dequantize=True, noise_draws=None):
  """Cache, shuffle, flip, dequantize, batch and prefetch `(image, label)`.

  The training split drops its last partial batch (every step sees a full,
  static-shape batch) unless `partial_batches`; evaluation splits keep it.
  `dequantize=False` yields the integer levels as float32 (for a model with
  its own `dequantizer`). `noise_draws=K` makes evaluation splits yield `K`
  dequantized copies per image, `[K, H, W, C]` (batched `[N, K, H, W, C]`),
  draw 0 being the single-draw pipeline's noise.
  """
  if cache:
    ds = ds.cache()
  if training:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if flip:
      ds = ds.map(lambda im, y: (tf.image.random_flip_left_right(im, seed=seed),
                                 y), num_parallel_calls=AUTOTUNE)

    def noise(im, y):
      im = tf.cast(im, tf.float32)
      if not dequantize:
        return im, y
      u = tf.random.uniform(tf.shape(im), seed=seed)
      return im + tf.minimum(u, _MAX_NOISE), y
    ds = ds.map(noise, num_parallel_calls=AUTOTUNE)
  elif not dequantize:
    ds = ds.map(lambda im, y: (tf.cast(im, tf.float32), y),
                num_parallel_calls=AUTOTUNE)
  else:
    # Stateless per-example noise: the same test set every time.
    def fixed_noise(index, pair):
      im, y = pair
      im = tf.cast(im, tf.float32)
      key = tf.stack([tf.cast(seed, tf.int64), index])
      if noise_draws:
        # Stateless draws are prefix-consistent: the first [H, W, C] values
        # of a [K, H, W, C] draw are the single draw of the same key.
        u = tf.random.stateless_uniform(
            tf.concat([[noise_draws], tf.shape(im)], 0), seed=key)
        return im[None] + tf.minimum(u, _MAX_NOISE), y
      u = tf.random.stateless_uniform(tf.shape(im), seed=key)
      return im + tf.minimum(u, _MAX_NOISE), y
    ds = ds.enumerate().map(fixed_noise, num_parallel_calls=AUTOTUNE)
  if conditional:
    ds = ds.map(lambda im, y: ((im, tf.cast(y, tf.int32)),))
  else:
    ds = ds.map(lambda im, y: im)
  ds = ds.batch(batch_size, drop_remainder=training and not partial_batches)
  options = tf.data.Options()
  # Evaluation splits always keep their order (and so their noise).
  options.deterministic = bool(deterministic) or not training
  return ds.with_options(options).prefetch(AUTOTUNE)


def partial_batches(name, train_size, batch_size):
  """True when the training split is smaller than one batch.

  Dropping the remainder would then leave no training step at all (an
  epoch that trains nothing); instead every epoch is one partial batch of
  the whole split, and the user is told.
  """
  if train_size is None or train_size >= batch_size:
    return False
  console.warn(f"batch_size {batch_size} is larger than the {train_size} "
               f"training images of {name!r}: every training step uses all "
               f"{train_size} images (one partial batch per epoch)")
  return True


def check_shape(ds, shape, name):
  spec = ds.element_spec[0]
  if not spec.shape.is_compatible_with(shape):
    raise ValueError(f"dataset {name!r} yields images of shape {spec.shape}, "
                     f"expected {shape}")

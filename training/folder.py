"""`folder:<path>` datasets: a folder of images, in one of two layouts.

- Any folder: its images (subfolders = classes, in sorted order) are split
  by position: every 10th file (in sorted order: class, then name) is test,
  the one after it validation, the rest training.
- A folder holding exactly `train/` and `test/` (and optionally
  `validation/`) subfolders: those are the splits, as given (e.g. test
  images cut from other regions or other photos than the training ones);
  without `validation/`, every 10th file of `train/` is validation. Inside
  each split, subfolders are classes (the same in every split).

Every file is decoded once when the dataset is loaded; files that cannot be
decoded (corrupt, truncated, not an image) are skipped with a warning that
names them, before any training step. Images are resized to `image_size`
(`keras.utils.image_dataset_from_directory`, cropped to its aspect ratio).
"""

import os
import re

import tensorflow as tf

from training import console
from training import pipeline

AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "validation", "test")


def split_layout(path):
  """`{split: directory}` when `path` holds `train/` and `test/` (and
  optionally `validation/`) and no other subfolder; None otherwise."""
  subdirs = {d for d in os.listdir(path)
             if os.path.isdir(os.path.join(path, d))}
  if {"train", "test"} <= subdirs and subdirs <= set(SPLITS):
    return {s: os.path.join(path, s) for s in SPLITS if s in subdirs}
  return None


def _read(path, height, width, channels):
  """`(dataset of (uint8 image, int64 label), images, class names)` of
  one folder (subfolders = classes), in sorted file order."""
  import keras  # pylint: disable=import-outside-toplevel
  subdirs = [d for d in sorted(os.listdir(path))
             if os.path.isdir(os.path.join(path, d))]
  ds = keras.utils.image_dataset_from_directory(
      path, labels="inferred" if subdirs else None,
      color_mode="grayscale" if channels == 1 else "rgb",
      image_size=(height, width), batch_size=None, shuffle=False,
      crop_to_aspect_ratio=True, verbose=False)
  files = list(ds.file_paths)
  unreadable = unreadable_images(files, channels)
  if unreadable:
    # Decoding fails for exactly these files, so dropping the elements whose
    # decoding fails drops exactly them: the order of the rest is unchanged.
    ds = ds.ignore_errors()
    shown = "\n  ".join(f"{f}: {why}" for f, why in unreadable[:20])
    more = (f"\n  ... and {len(unreadable) - 20} more"
            if len(unreadable) > 20 else "")
    console.warn(f"skipping {len(unreadable)} of {len(files)} files in image "
                 f"folder {path!r} that cannot be decoded as images:\n  "
                 f"{shown}{more}")
  if not subdirs:
    ds = ds.map(lambda im: (im, tf.constant(-1, tf.int64)))
  ds = ds.map(lambda im, y: (tf.cast(tf.clip_by_value(tf.round(im), 0, 255),
                                     tf.uint8), tf.cast(y, tf.int64)))
  return ds, len(files) - len(unreadable), subdirs


def _every_tenth(ds, keep):
  """The elements whose position modulo 10 satisfies `keep`."""
  return ds.enumerate().filter(lambda i, pair: keep(i % 10)).map(
      lambda i, pair: pair)


def load(path, image_size, common):
  """The pipelines of image folder `path` (module docstring), as the
  keyword arguments of `training.data.Datasets`; `common` are
  `pipeline.finish`'s arguments."""
  if not os.path.isdir(path):
    raise FileNotFoundError(f"image folder {path!r} does not exist")
  if image_size is None or len(image_size) != 3:
    raise ValueError("a folder dataset needs image_size=(height, width, "
                     f"channels), got {image_size!r}")
  height, width, channels = (int(d) for d in image_size)
  if channels not in (1, 3):
    raise ValueError(f"folder images must have 1 or 3 channels, got "
                     f"{channels}")
  layout = split_layout(path)
  if layout is None:
    ds, n, classes = _read(path, height, width, channels)
    if n < 10:
      raise ValueError(f"image folder {path!r} has {n} images; need at "
                       f"least 10 (every 10th file is held out for test, "
                       f"the next for validation)")
    # Files come in sorted order (class, then name); every 10th is test,
    # the one after it validation: fixed, disjoint, stratified by class.
    test = _every_tenth(ds, lambda r: tf.equal(r, 0))
    val = _every_tenth(ds, lambda r: tf.equal(r, 1))
    train = _every_tenth(ds, lambda r: r >= 2)
    train_size = n - len(range(0, n, 10)) - len(range(1, n, 10))
  else:
    train, n_train, classes = _read(layout["train"], height, width, channels)
    test, n_test, test_classes = _read(layout["test"], height, width,
                                       channels)
    found = {"train": classes, "test": test_classes}
    if "validation" in layout:
      val, n_val, found["validation"] = _read(layout["validation"], height,
                                              width, channels)
    else:  # every 10th training file
      if n_train < 10:
        raise ValueError(f"{layout['train']!r} has {n_train} images; need "
                         f"at least 10 without a validation/ folder (every "
                         f"10th training file is validation)")
      val = _every_tenth(train, lambda r: tf.equal(r, 0))
      train = _every_tenth(train, lambda r: r >= 1)
      n_val = len(range(0, n_train, 10))
      n_train -= n_val
    if len({tuple(c) for c in found.values()}) > 1:
      raise ValueError(f"image folder {path!r}: the splits' class "
                       f"subfolders differ: " + "; ".join(
                           f"{s}/ has {c or 'none'}" for s, c in
                           found.items()))
    for split, n in (("train", n_train), ("validation", n_val),
                     ("test", n_test)):
      if n < 1:
        raise ValueError(f"image folder {path!r}: its {split} split has no "
                         f"readable image")
    train_size = n_train
  num_classes = len(classes) if classes else None
  if common["conditional"] and not num_classes:
    raise ValueError(f"image folder {path!r} has no class subfolders; a "
                     f"class-conditional model needs them")
  partial = pipeline.partial_batches(f"folder:{path}", train_size,
                                     common["batch_size"])
  pipelines = [pipeline.finish(part, training=training, flip=False,
                               cache=False, partial_batches=partial, **common)
               for part, training in ((train, True), (val, False),
                                      (test, False))]
  return dict(zip(("train", "validation", "test"), pipelines),
              image_shape=(height, width, channels), num_classes=num_classes,
              train_size=train_size, name=f"folder:{path}")


def unreadable_images(files, channels):
  """`[(file, reason)]` for the files TensorFlow cannot decode as images.

  One parallel decoding pass with the decoder the folder pipeline uses
  (`tf.image.decode_image`), so a corrupt or truncated file is found and
  named before training instead of failing a training step later.
  """
  def probe(path):
    image = tf.image.decode_image(tf.io.read_file(path), channels=channels,
                                  expand_animations=False)
    return path, tf.shape(image)[0]
  readable = {
      p.decode() for p, _ in
      tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
      .map(probe, num_parallel_calls=AUTOTUNE).ignore_errors()
      .as_numpy_iterator()} if files else set()
  bad = []
  for f in files:
    if f in readable:
      continue
    try:  # the decoder's own message, for the warning
      tf.image.decode_image(tf.io.read_file(f), channels=channels,
                            expand_animations=False)
      reason = "could not be decoded"
    except (tf.errors.OpError, ValueError) as e:
      reason = getattr(e, "message", None) or str(e)
      reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", reason.strip(),
                      flags=re.S) or type(e).__name__
    bad.append((f, reason))
  return bad

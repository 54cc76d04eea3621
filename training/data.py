"""tf.data pipelines for training Real NVP (paper §4.1).

Every pipeline yields dequantized pixels `x = pixel + u, u ~ U[0, 1)` as
float32 `[B, H, W, C]` in `[0, 256)` (or `((x, labels),)` for
class-conditional training, the form Keras `fit` passes as one input).

| name                          | source                        | shape      | splits (train / validation / test) | flips |
|-------------------------------|-------------------------------|------------|------------------------------------|-------|
| `digits` (embedded default)   | scikit-learn 8×8 digits       | 8×8×1      | fixed 70% / 10% / 20% permutation  | no    |
| `mnist`, `fashion_mnist`      | tfds                          | 28×28×1    | train[:90%] / train[90%:] / test   | no    |
| `cifar10`                     | tfds                          | 32×32×3    | train[:90%] / train[90%:] / test   | yes   |
| `celeb_a`                     | tfds, central 148×148 → 64×64 | 64×64×3    | train / validation / test          | yes   |
| `downsampled_imagenet/32x32`  | tfds                          | 32×32×3    | train[:99%] / train[99%:] / validation | no |
| `downsampled_imagenet/64x64`  | tfds                          | 64×64×3    | train[:99%] / train[99%:] / validation | no |
| `lsun/bedroom`, `lsun/tower`, `lsun/church_outdoor` | tfds, short side → 96, 64×64 crop (random for train, central otherwise) | 64×64×3 | train[1%:] / train[:1%] / validation | yes |
| `folder:<path>`               | a folder of images (subfolders = classes) | `image_size` | files in sorted order: every 10th test, the next validation, the rest train | no |
| `folder:<path>` with `train/`, `test/` (and `validation/`) | those split folders (subfolders = classes) | `image_size` | as given (no `validation/`: every 10th file of `train/`) | no |

A `folder:` dataset (`training/folder.py`) decodes every file once when it
is loaded; files that cannot be decoded (corrupt, truncated, not an image)
are skipped with a warning that names them, before any training step. A training split smaller
than one batch is trained as one partial batch per epoch (with a warning)
instead of yielding no step at all.

Datasets without a labelled test split use their held-out split as "test",
so bits/dim is always reported on data never trained on. The evaluation
pipelines (validation, test) never flip or shuffle and dequantize with a
stateless per-example seed, so their bits/dim is repeatable.

Offline use: `data_dir` is the tfds data directory; `manual_dir` holds the
dataset's raw files (for example the four MNIST `.gz` files) which tfds
prepares through `DownloadConfig(manual_dir=...)`, extracting into a
per-dataset `extract_dir` (tfds names extractions by file name only).
"""

import dataclasses
import os
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from training import folder
from training import pipeline

AUTOTUNE = tf.data.AUTOTUNE
_finish = pipeline.finish  # moved to training/pipeline.py; tests call it here


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """How one dataset becomes model input."""
  image_shape: Tuple[int, int, int]
  num_classes: Optional[int]
  flip: bool
  splits: Tuple[str, str, str]  # train, validation, test (tfds split names)
  cache: bool  # small enough to cache decoded images in memory
  preprocess: Optional[Callable] = None  # (uint8 image, training, seed) -> uint8


def _central_crop_resize(crop, size):
  def prep(image, training, seed):
    del training, seed
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - crop) // 2, (w - crop) // 2
    image = image[top:top + crop, left:left + crop]
    image = tf.image.resize(tf.cast(image, tf.float32), [size, size],
                            method="area", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
  return prep


def _short_side_then_crop(short, size):
  def prep(image, training, seed):
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    scale = short / tf.minimum(h, w)
    new_hw = tf.cast(tf.round(tf.stack([h, w]) * scale), tf.int32)
    new_hw = tf.maximum(new_hw, short)
    image = tf.image.resize(tf.cast(image, tf.float32), new_hw, method="area",
                            antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    if training:
      return tf.image.random_crop(image, [size, size, 3], seed=seed)
    top = (new_hw[0] - size) // 2
    left = (new_hw[1] - size) // 2
    return image[top:top + size, left:left + size]
  return prep


def _exact_size(size):
  """A no-op on correctly sized images that also fixes the static shape
  (tfds declares downsampled ImageNet images as [None, None, 3])."""
  def prep(image, training, seed):
    del training, seed
    return tf.image.resize_with_crop_or_pad(image, size, size)
  return prep


TFDS_SPECS = {
    "mnist": DataSpec((28, 28, 1), 10, False,
                      ("train[:90%]", "train[90%:]", "test"), True),
    "fashion_mnist": DataSpec((28, 28, 1), 10, False,
                              ("train[:90%]", "train[90%:]", "test"), True),
    "cifar10": DataSpec((32, 32, 3), 10, True,
                        ("train[:90%]", "train[90%:]", "test"), True),
    "celeb_a": DataSpec((64, 64, 3), None, True,
                        ("train", "validation", "test"), False,
                        _central_crop_resize(148, 64)),
    "downsampled_imagenet/32x32": DataSpec(
        (32, 32, 3), None, False,
        ("train[:99%]", "train[99%:]", "validation"), False, _exact_size(32)),
    "downsampled_imagenet/64x64": DataSpec(
        (64, 64, 3), None, False,
        ("train[:99%]", "train[99%:]", "validation"), False, _exact_size(64)),
}
# The paper's three LSUN categories (Table 1): one pipeline, §4.1's
# short side 96 then a 64×64 crop (random for training, central otherwise).
for _category in ("bedroom", "tower", "church_outdoor"):
  TFDS_SPECS[f"lsun/{_category}"] = DataSpec(
      (64, 64, 3), None, True, ("train[1%:]", "train[:1%]", "validation"),
      False, _short_side_then_crop(96, 64))
del _category
DATASETS = ("digits",) + tuple(TFDS_SPECS) + ("folder:<path>",)


@dataclasses.dataclass
class Datasets:
  """The three pipelines and what the model needs to know about them."""
  train: tf.data.Dataset
  validation: tf.data.Dataset
  test: tf.data.Dataset
  image_shape: Tuple[int, int, int]
  num_classes: Optional[int]
  train_size: Optional[int]
  name: str


# --- the embedded default -------------------------------------------------------


def digits_arrays(seed=0, val_fraction=0.1, test_fraction=0.2):
  """scikit-learn digits as uint8 `[N, 8, 8, 1]` pixel levels, split.

  Values 0..16 become levels `round(v · 255 / 16)`. Returns
  `dict(train=(images, labels), validation=..., test=...)` from a fixed
  permutation of `seed`.
  """
  from sklearn import datasets  # pylint: disable=import-outside-toplevel
  digits = datasets.load_digits()
  pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  pixels = pixels[..., None]
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(seed).permutation(len(pixels))
  n_test = int(round(test_fraction * len(pixels)))
  n_val = int(round(val_fraction * len(pixels)))
  test, val, train = np.split(order, [n_test, n_test + n_val])
  return {name: (pixels[idx], labels[idx])
          for name, idx in (("train", train), ("validation", val),
                            ("test", test))}


def dequantize(pixels, rng):
  """Uniform dequantization in NumPy: integer levels + U[0, 1), float32."""
  pixels = np.asarray(pixels)
  return (pixels.astype(np.float32) +
          rng.random(pixels.shape, dtype=np.float32))


def gaussian_baseline_bits_per_dim(train_pixels, test_pixels, seed=0):
  """Bits/dim of an independent Gaussian per pixel fitted to `train`.

  Both sets are dequantized the same way the model sees them, so the figure
  is directly comparable to the model's bits/dim.
  """
  rng = np.random.default_rng(seed)
  train = dequantize(train_pixels, rng).astype(np.float64)
  test = dequantize(test_pixels, rng).astype(np.float64)
  mean = train.mean(axis=0)
  std = train.std(axis=0)
  nll = (0.5 * np.log(2 * np.pi * std ** 2) +
         0.5 * ((test - mean) / std) ** 2)
  return float(nll.sum(axis=(1, 2, 3)).mean() / (train[0].size * np.log(2)))


def prepare_tfds(name, data_dir=None, manual_dir=None, download=True):
  """Builds (downloads or prepares from `manual_dir`) a tfds dataset."""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  builder = tfds.builder(name, data_dir=data_dir)
  if manual_dir is not None:
    if not os.path.isdir(manual_dir):
      raise FileNotFoundError(f"manual_dir {manual_dir!r} does not exist")
    root = data_dir or os.path.expanduser("~/tensorflow_datasets")
    safe = name.replace("/", "_")
    config = tfds.download.DownloadConfig(
        manual_dir=manual_dir,
        extract_dir=os.path.join(root, "extracted", safe))
    builder.download_and_prepare(
        download_dir=os.path.join(root, "downloads", safe),
        download_config=config)
  elif download:
    builder.download_and_prepare()
  return builder


def load(name="digits", *, batch_size=64, seed=0, conditional=False,
         data_dir=None, manual_dir=None, download=True, deterministic=False,
         image_size=None, shuffle_buffer=10000, dequantize=True,
         noise_draws=None):
  """Returns `Datasets` (train, validation, test pipelines) for `name`.

  Args:
    name: one of `DATASETS` (`folder:<path>` for a local image folder).
    batch_size: per-step global batch size.
    seed: shuffling / flipping / dequantization seed.
    conditional: yield `((images, labels),)` for a class-conditional model.
    data_dir: tfds data directory (`None`: tfds' default).
    manual_dir: raw files to prepare the tfds dataset from, offline.
    download: allow tfds to download (ignored when `manual_dir` is set).
    deterministic: deterministic element order in tf.data.
    image_size: `(height, width, channels)` for `folder:` datasets.
    shuffle_buffer: shuffle buffer size for the training split.
    dequantize: add `U[0, 1)` noise (fixed per example outside training);
      `False` yields integer levels for a model with its own dequantizer.
    noise_draws: `None`, or `K`: validation and test yield `K` dequantized
      draws per image, `[N, K, H, W, C]` (importance-weighted evaluation,
      `RealNVP.importance_weighted_log_prob`); draw 0 is the noise they
      yield without it.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if noise_draws is not None and (isinstance(noise_draws, bool) or
                                  not isinstance(noise_draws, int) or
                                  noise_draws < 1):
    raise ValueError(f"noise_draws must be None or an integer >= 1, got "
                     f"{noise_draws!r}")
  if noise_draws and not dequantize:
    raise ValueError("noise_draws needs dequantize=True (a model with its "
                     "own dequantizer draws its noise itself)")
  common = dict(batch_size=batch_size, seed=seed, conditional=conditional,
                shuffle_buffer=shuffle_buffer, deterministic=deterministic,
                dequantize=dequantize, noise_draws=noise_draws)
  if name == "digits":
    return _load_digits(common)
  if name.startswith("folder:"):
    return _load_folder(name[len("folder:"):], image_size, common)
  if name not in TFDS_SPECS:
    raise ValueError(f"unknown dataset {name!r}; expected one of "
                     f"{', '.join(DATASETS)}")
  spec = TFDS_SPECS[name]
  if conditional and spec.num_classes is None:
    raise ValueError(f"dataset {name!r} has no class labels; a "
                     f"class-conditional model cannot be trained on it")
  builder = prepare_tfds(name, data_dir, manual_dir, download)
  try:
    train_size = builder.info.splits[spec.splits[0]].num_examples
  except KeyError:  # split metadata unavailable (e.g. mocked tfds)
    train_size = None
  partial = pipeline.partial_batches(name, train_size, batch_size)
  pipelines = []
  for split, training in zip(spec.splits, (True, False, False)):
    ds = builder.as_dataset(split=split, shuffle_files=training)
    prep = spec.preprocess

    def to_pair(ex, training=training, prep=prep):
      image = ex["image"]
      if prep is not None:
        image = prep(image, training, seed)
      label = ex["label"] if "label" in ex else tf.constant(-1, tf.int64)
      return image, label
    ds = ds.map(to_pair, num_parallel_calls=AUTOTUNE)
    pipeline.check_shape(ds, spec.image_shape, name)
    pipelines.append(pipeline.finish(
        ds, training=training, flip=spec.flip and training, cache=spec.cache,
        partial_batches=partial, **common))
  return Datasets(*pipelines, image_shape=spec.image_shape,
                  num_classes=spec.num_classes, train_size=train_size,
                  name=name)


def _load_digits(common):
  arrays = digits_arrays(seed=0)
  partial = pipeline.partial_batches("digits", len(arrays["train"][0]),
                                     common["batch_size"])
  pipelines = []
  for split, training in (("train", True), ("validation", False),
                          ("test", False)):
    pixels, labels = arrays[split]
    ds = tf.data.Dataset.from_tensor_slices((pixels, labels))
    pipelines.append(pipeline.finish(ds, training=training, flip=False,
                                     cache=True, partial_batches=partial,
                                     **common))
  return Datasets(*pipelines, image_shape=(8, 8, 1), num_classes=10,
                  train_size=len(arrays["train"][0]), name="digits")


def _load_folder(path, image_size, common):
  """`folder:<path>` (`training/folder.py`)."""
  return Datasets(**folder.load(path, image_size, common))


def unreadable_images(files, channels):
  """`folder.unreadable_images` (moved there; still importable here)."""
  return folder.unreadable_images(files, channels)

"""Datasets for training Real NVP: arrays and tf.data pipelines.

`digits` is the embedded default: scikit-learn's 8×8 handwritten digits
(1,797 images shipped inside the scikit-learn wheel, no download). Their
values 0..16 are mapped to 8-bit pixel levels `round(v · 255 / 16)`.
"""

import numpy as np


def digits_arrays(seed=0, val_fraction=0.1, test_fraction=0.2):
  """scikit-learn digits as uint8 `[N, 8, 8, 1]` pixel levels, split.

  Returns `dict(train=(images, labels), validation=..., test=...)`; the split
  is a fixed permutation from `seed`.
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
  """Uniform dequantization: integer levels + U[0, 1), as float32."""
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

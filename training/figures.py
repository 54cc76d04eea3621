"""PNG figures of a trained model: sample grids and the eq. 19 manifold."""

import numpy as np

from tfp_realnvp import atomic


def to_uint8(images):
  """Pixel-space floats `[..., H, W, C]` in [0, 256) -> uint8 levels."""
  return np.clip(np.floor(np.asarray(images, np.float32)), 0, 255).astype(
      np.uint8)


def grid(images, ncols=None, pad=1):
  """Tiles `[N, H, W, C]` (or `[R, K, H, W, C]`) into one uint8 image."""
  images = to_uint8(images)
  if images.ndim == 5:
    rows, ncols = images.shape[:2]
    images = images.reshape((-1,) + images.shape[2:])
  else:
    ncols = ncols or int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / ncols))
  n, h, w, c = images.shape
  canvas = np.full((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), 255,
                   np.uint8)
  for i in range(n):
    r, k = divmod(i, ncols)
    top, left = pad + r * (h + pad), pad + k * (w + pad)
    canvas[top:top + h, left:left + w] = images[i]
  return canvas


def save_png(image, path, upscale=1):
  """Writes a uint8 `[H, W, C]` array as PNG, atomically (temp + rename)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  image = np.asarray(image)
  if upscale > 1:
    image = image.repeat(upscale, axis=0).repeat(upscale, axis=1)
  if image.shape[-1] == 1:
    image = image[..., 0]
  with atomic.atomic_path(path, suffix=".png") as tmp:
    Image.fromarray(image).save(tmp, format="PNG")
  return path


def upscale_for(image_shape, target=256):
  """Integer upscaling so a small-image grid is readable."""
  return max(1, target // (8 * int(image_shape[0])))


def sample_grid(model, num_samples, temperature, seed, labels=None):
  """One grid of samples (per class rows for conditional models)."""
  if model.num_classes and labels is None:
    per_class = max(1, num_samples // model.num_classes)
    labels = np.repeat(np.arange(model.num_classes), per_class)
    images = model.sample(len(labels), temperature=temperature, seed=seed,
                          labels=labels).numpy()
    return grid(images.reshape((model.num_classes, per_class) +
                               images.shape[1:]))
  images = model.sample(num_samples, temperature=temperature, seed=seed,
                        labels=labels).numpy()
  return grid(images)

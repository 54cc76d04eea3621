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


def upscaled(image, factor):
  """`image` `[H, W, C]` with every pixel repeated `factor`×`factor`."""
  image = np.asarray(image)
  if factor <= 1:
    return image
  return image.repeat(factor, axis=0).repeat(factor, axis=1)


def captioned(image, text, height=16):
  """`image` `[H, W, C]` (uint8, C in 1 or 3) with a white band on top
  holding `text` (e.g. a sample grid's temperature), PIL's default font."""
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  image = np.asarray(image, np.uint8)
  channels = image.shape[-1]
  band = Image.new("L" if channels == 1 else "RGB",
                   (image.shape[1], height), 255 if channels == 1 else
                   (255, 255, 255))
  ImageDraw.Draw(band).text((2, 2), text, fill=0 if channels == 1 else
                            (0, 0, 0))
  band = np.asarray(band, np.uint8).reshape(height, image.shape[1], channels)
  return np.concatenate([band, image], axis=0)


def temperature_caption(temperature, label=None):
  """The caption of a sample grid: `T = 0.7` (and its class)."""
  return f"T = {temperature:g}" + ("" if label is None else
                                   f", class {label}")


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


def histogram(values, title, bins=40, size=(640, 400)):
  """A uint8 RGB histogram `[H, W, 3]` of `values` with its title, the
  x range, the count and the mean written on it (PIL, no plotting library).
  """
  from PIL import Image, ImageDraw  # pylint: disable=import-outside-toplevel
  values = np.asarray(values, np.float64).ravel()
  finite = values[np.isfinite(values)]
  width, height = size
  image = Image.new("RGB", size, (255, 255, 255))
  draw = ImageDraw.Draw(image)
  left, right, top, bottom = 50, width - 20, 40, height - 50
  draw.text((left, 10), title, fill=(0, 0, 0))
  draw.line([(left, bottom), (right, bottom)], fill=(0, 0, 0))
  draw.line([(left, top), (left, bottom)], fill=(0, 0, 0))
  if finite.size:
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
      lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
    scale = (bottom - top) / max(int(counts.max()), 1)
    bar = (right - left) / bins
    for i, c in enumerate(counts):
      x0 = left + i * bar
      draw.rectangle([x0 + 1, bottom - c * scale, x0 + bar - 1, bottom],
                     fill=(70, 110, 180))
    draw.text((left, bottom + 8), f"{edges[0]:.4g}", fill=(0, 0, 0))
    draw.text((right - 60, bottom + 8), f"{edges[-1]:.4g}", fill=(0, 0, 0))
    draw.text((5, top), str(int(counts.max())), fill=(0, 0, 0))
  skipped = values.size - finite.size
  draw.text((left, bottom + 26),
            f"n = {values.size}" + (f" ({skipped} non-finite, not drawn)"
                                    if skipped else "") +
            (f", mean {finite.mean():.4g}" if finite.size else ""),
            fill=(0, 0, 0))
  return np.asarray(image)

"""Colour photo patches that need no download: a stand-in for CIFAR-10 on
machines without it.

    python -m bench.photos                  # write (once) and print the folder
    realnvp-train --config cifar10_fast --dataset folder:$(python -m bench.photos) \
        --image_size 32,32,3
    python -m bench.quality --data photos --configs cifar10_fast --impls nf_glow

32×32×3 uint8 patches of the colour photos scikit-image ships inside its
wheel (`skimage.data` reads them from the installed package; the photos it
would fetch with pooch are not used). `PHOTOS` names the nine used; all of
them loaded offline from scikit-image 0.26.0 (2026-12): astronaut, chelsea,
coffee, hubble_deep_field, immunohistochemistry (the "ihc" photo),
motorcycle left and right (`stereo_motorcycle`, a rectified stereo pair),
retina and rocket. A photo that does not load (another scikit-image
version) is skipped and named (`load_photos`); the content hash
(`digest`) then differs, so results from different sets never mix.

Disjoint regions: every photo's rows are cut in two, the top rows for
training (and validation), the bottom rows for test: the bottom
`max(128, 30%)` rows, after a gap of `GAP` rows. No test patch shares a
pixel with a training patch, and the stereo pair, rectified (its rows
correspond), keeps each scene row on the same side in both photos.

Patches: a square crop of side 32·f (f drawn from 1, 2, 4, among those
that fit the region) averaged over f×f blocks to 32×32 (area
downsampling), so the set mixes fine texture and object-scale content as
CIFAR's 32×32 thumbnails do; crops whose pixels have a standard deviation
below `MIN_STD` levels (retina's black border, flat sky) are drawn again.
`COUNTS` patches per split (20,000 training, 1,000 validation, 5,000 test),
spread evenly over the photos, from one `numpy.random.default_rng(SEED)`:
the same arrays on every machine with the same scikit-image photos.
Validation patches come from the training rows (they may overlap training
crops: validation only picks the best checkpoint).

For the training app the patches are written once as PNG folders
`<root>/photos-<digest>/{train,validation,test}/NNNNNN.png`
(`write_folder`; `--dataset folder:PATH` reads that split layout, file
order = array order, so the evaluation noise of image i is the same in
both), cached by the arrays' content hash under `default_root()`.
`datasets` gives the peers the same pipelines from the arrays.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile

import numpy as np

SIDE = 32
SHAPE = (SIDE, SIDE, 3)
SEED = 0
COUNTS = {"train": 20000, "validation": 1000, "test": 5000}
FACTORS = (1, 2, 4)
GAP = 16
TEST_ROWS = (128, 0.3)  # at least 128 rows, at least 30% of the photo
MIN_STD = 2.0
# (name, skimage.data function, index into its result or None)
PHOTOS = (
    ("astronaut", "astronaut", None),
    ("chelsea", "chelsea", None),
    ("coffee", "coffee", None),
    ("hubble_deep_field", "hubble_deep_field", None),
    ("immunohistochemistry", "immunohistochemistry", None),
    ("motorcycle_left", "stereo_motorcycle", 0),
    ("motorcycle_right", "stereo_motorcycle", 1),
    ("retina", "retina", None),
    ("rocket", "rocket", None),
)


def _skimage_data():
  try:
    from skimage import data  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("bench.photos needs scikit-image: pip install -e "
                      "\".[bench]\" (or pip install scikit-image)") from e
  return data


def load_photos():
  """`[(name, uint8 [H, W, 3])]` of the `PHOTOS` that load offline; each
  one that does not is named on stderr. A RuntimeError if none does."""
  data = _skimage_data()
  photos, missing = [], []
  for name, function, index in PHOTOS:
    try:
      image = getattr(data, function)()
    except Exception as e:  # pylint: disable=broad-except
      # Not in this wheel (pooch would download it): skipped.
      missing.append(f"{name} ({type(e).__name__}: {e})")
      continue
    image = np.asarray(image if index is None else image[index])
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
      missing.append(f"{name} (not an RGB uint8 photo: {image.shape}, "
                     f"{image.dtype})")
      continue
    photos.append((name, np.ascontiguousarray(image[..., :3])))
  if missing:
    print("bench.photos: skipped " + "; ".join(missing), file=sys.stderr)
  if not photos:
    raise RuntimeError("bench.photos: none of the scikit-image photos loads "
                       "offline")
  return photos


def regions(height):
  """`{"train": (top, bottom), "test": (top, bottom)}` row ranges of a
  photo `height` rows high (validation uses the training rows)."""
  test_rows = max(TEST_ROWS[0], int(round(TEST_ROWS[1] * height)))
  cut = height - test_rows - GAP
  if cut < SIDE:
    raise ValueError(f"a photo of {height} rows is too small for disjoint "
                     f"training and test regions")
  return {"train": (0, cut), "validation": (0, cut),
          "test": (height - test_rows, height)}


def _patch(image, rows, rng):
  """One 32×32 patch from rows `[top, bottom)` of `image` (module
  docstring), or None when the region is too small."""
  top, bottom = rows
  width = image.shape[1]
  factors = [f for f in FACTORS if SIDE * f <= min(bottom - top, width)]
  if not factors:
    return None
  for _ in range(100):
    f = factors[rng.integers(len(factors))]
    side = SIDE * f
    y = int(rng.integers(top, bottom - side + 1))
    x = int(rng.integers(0, width - side + 1))
    crop = image[y:y + side, x:x + side].astype(np.float64)
    patch = crop.reshape(SIDE, f, SIDE, f, 3).mean(axis=(1, 3))
    patch = np.clip(np.round(patch), 0, 255).astype(np.uint8)
    if patch.std() >= MIN_STD:
      return patch
  return patch  # a flat region: keep the last draw


def patches(seed=SEED, counts=None, photos=None):
  """`{"train", "validation", "test"}` uint8 `[N, 32, 32, 3]` patch arrays
  (module docstring) and `"photos"`, the names used."""
  counts = dict(COUNTS, **(counts or {}))
  photos = load_photos() if photos is None else photos
  rng = np.random.default_rng(seed)
  out = {"photos": [name for name, _ in photos]}
  for split in ("train", "validation", "test"):
    per_photo = [counts[split] // len(photos) +
                 (1 if i < counts[split] % len(photos) else 0)
                 for i in range(len(photos))]
    chosen = []
    for (name, image), n in zip(photos, per_photo):
      rows = regions(image.shape[0])[split]
      for _ in range(n):
        patch = _patch(image, rows, rng)
        if patch is None:
          raise ValueError(f"photo {name} has no room for a {SIDE}x{SIDE} "
                           f"patch in its {split} rows {rows}")
        chosen.append(patch)
    out[split] = np.stack(chosen) if chosen else np.zeros((0,) + SHAPE,
                                                          np.uint8)
  return out


def digest(arrays):
  """Content hash (16 hex digits) of the patch arrays and photo names."""
  h = hashlib.sha256()
  h.update(json.dumps(arrays["photos"]).encode())
  for split in ("train", "validation", "test"):
    a = np.ascontiguousarray(arrays[split])
    h.update(f"{split}{a.shape}{a.dtype}".encode())
    h.update(a.tobytes())
  return h.hexdigest()[:16]


def default_root():
  """Where `write_folder` caches: `$XDG_CACHE_HOME/tfp-realnvp` (default
  `~/.cache/tfp-realnvp`)."""
  cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(cache, "tfp-realnvp")


MANIFEST = "manifest.json"


def write_folder(arrays, root=None):
  """Writes the arrays as PNG folders `<root>/photos-<digest>/<split>/
  NNNNNN.png` (once: an existing complete folder, one with its
  manifest.json, is reused) and returns the folder's path."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  root = root or default_root()
  path = os.path.join(root, f"photos-{digest(arrays)}")
  if os.path.exists(os.path.join(path, MANIFEST)):
    return path
  os.makedirs(root, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".photos-", dir=root)
  try:
    for split in ("train", "validation", "test"):
      os.makedirs(os.path.join(tmp, split))
      for i, patch in enumerate(arrays[split]):
        Image.fromarray(patch).save(os.path.join(tmp, split, f"{i:06d}.png"),
                                    compress_level=1)
    manifest = {"photos": arrays["photos"], "seed": SEED,
                "counts": {s: int(len(arrays[s])) for s in
                           ("train", "validation", "test")},
                "digest": digest(arrays), "shape": list(SHAPE),
                "made_by": "bench.photos (a stand-in for CIFAR-10)"}
    with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as f:
      json.dump(manifest, f, indent=1)
    try:
      os.rename(tmp, path)
    except OSError:
      if not os.path.exists(os.path.join(path, MANIFEST)):
        raise  # not another process that finished first
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)
  return path


def prepare(root=None):
  """`(arrays, folder)`: the patches and their PNG folder (written once)."""
  arrays = patches()
  return arrays, write_folder(arrays, root)


def datasets(arrays, batch_size=64, seed=0):
  """`training.data.Datasets` from the arrays, through the stages a
  `folder:` dataset ends with (shuffled, dequantized training split; fixed
  per-example evaluation noise; no flips), so a peer fed these sees what
  `realnvp-train --dataset folder:<write_folder(...)>` sees."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from training import data  # pylint: disable=import-outside-toplevel
  from training import pipeline  # pylint: disable=import-outside-toplevel
  common = dict(batch_size=batch_size, seed=seed, conditional=False,
                shuffle_buffer=10000, deterministic=False)
  pipelines = []
  for split, training in (("train", True), ("validation", False),
                          ("test", False)):
    images = arrays[split]
    ds = tf.data.Dataset.from_tensor_slices(
        (images, np.full(len(images), -1, np.int64)))
    pipelines.append(pipeline.finish(ds, training=training, flip=False,
                                     cache=False, **common))
  return data.Datasets(*pipelines, image_shape=SHAPE, num_classes=None,
                       train_size=len(arrays["train"]), name="photos")


def main(argv=None):
  p = argparse.ArgumentParser(prog="python -m bench.photos",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--root", default=None,
                 help=f"cache directory (default: {default_root()})")
  args = p.parse_args(argv)
  arrays, path = prepare(args.root)
  print(f"{len(arrays['train']):,} training, {len(arrays['validation']):,} "
        f"validation, {len(arrays['test']):,} test patches of "
        f"{', '.join(arrays['photos'])}", file=sys.stderr)
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())

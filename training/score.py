"""`realnvp-score`: out-of-distribution scores of images, one per file.

    realnvp-score --model runs/mnist_fast-20261206-010000 --data mnist \\
        --kind typicality --output mnist_test.csv --data_dir ../shared/data/tfds
    realnvp-score --model saved_models/mnist_fast --data folder:photos/ \\
        --kind complexity --output photos.csv

Writes `FILE.csv` (columns `file,score`; higher = more unusual for every
kind) and a histogram `FILE.png` beside it, both atomically. Kinds
(`tfp_realnvp.scores`): `bpd` (bits/dim at the pixel bins' centres),
`typicality` (|bpd − the model's mean training bpd|, Nalisnick et al. 2019)
and `complexity` (bpd − PNG bits/dim, Serrà et al. 2020).

`--model` is a run directory, a `.keras` checkpoint, or a TF Serving export
(a version directory, or a model directory whose newest version is used):
an export alone is enough, scored through its `score` signature. `--data` is
a dataset name (`--split`, default test; rows named `NAME:SPLIT:INDEX`) or
`folder:PATH`, searched recursively for PNG and JPEG files (rows named by
path). Folder images must have the model's height and width unless
`--resize` (central crop to the aspect ratio, then bilinear resize); they are
converted to the model's channels. Files that cannot be decoded are named
in a warning and skipped.
"""

import argparse
import csv
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

from tfp_realnvp import atomic
from tfp_realnvp import export as export_lib
from tfp_realnvp import scores
from training import checkpoints
from training import console
from training import data
from training import figures

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MODEL_FORMS = ("a realnvp-train run directory, a .keras checkpoint, a TF "
               "Serving export (a version directory, a model directory of "
               "versions, or the --export_dir base holding one model)")


def _newest_version(path):
  """The newest integer version directory under `path` that holds a
  SavedModel, or None."""
  versions = sorted(int(d) for d in os.listdir(path) if d.isdigit() and
                    os.path.exists(os.path.join(path, d, "saved_model.pb")))
  return os.path.join(path, str(versions[-1])) if versions else None


def find_export(path):
  """The SavedModel directory of an export path (a version directory, the
  newest integer version of a model directory, or of the only model of an
  `--export_dir` base), or None. A base holding several models is a
  `ValueError` naming them."""
  if os.path.exists(os.path.join(path, "saved_model.pb")):
    return path
  if not os.path.isdir(path):
    return None
  newest = _newest_version(path)
  if newest is not None:
    return newest
  models = {}
  for name in sorted(os.listdir(path)):
    if os.path.isdir(os.path.join(path, name)):
      version = _newest_version(os.path.join(path, name))
      if version is not None:
        models[name] = version
  if len(models) > 1:
    raise ValueError(f"{path!r} is an export base holding the models "
                     f"{', '.join(models)}; give one of them, e.g. "
                     f"--model {os.path.join(path, next(iter(models)))}")
  return next(iter(models.values()), None)


class _KerasScorer:
  """Scores with a `RealNVP` from a run directory or `.keras` file."""

  def __init__(self, checkpoint, kind, raw_weights):
    self.model = checkpoints.load_model(checkpoint, raw_weights=raw_weights)
    self.image_shape = tuple(self.model.image_shape)
    if scores.SCORES[kind].needs_reference:
      self.model.check_score_statistics()  # a clear error before any work
    self._fn = tf.function(lambda levels: self.model.score(levels, kind),
                           reduce_retracing=True)

  def __call__(self, levels):
    return self._fn(tf.constant(levels)).numpy()


class _ExportScorer:
  """Scores with a TF Serving export's `score` signature."""

  def __init__(self, version_dir, kind):
    description = export_lib.read_description(version_dir)
    self.image_shape = tuple(description["image_shape"])
    self.key = scores.SCORES[kind].output
    if self.key not in description["score_outputs"]:
      raise ValueError(
          f"the export {version_dir} has no {self.key!r} score output (it "
          f"was exported without a typicality reference; export a model "
          f"whose fit() finished, or one after "
          f"model.compute_score_statistics(training_data))")
    # Keep the loaded object: its signatures do not own the variables.
    self._loaded = tf.saved_model.load(version_dir)
    self._fn = self._loaded.signatures["score"]

  def __call__(self, levels):
    return self._fn(images=tf.constant(levels, tf.uint8))[self.key].numpy()


def load_scorer(model_path, kind, raw_weights=False):
  """A callable uint8 levels `[N, H, W, C]` -> scores `[N]`, with its
  `image_shape`."""
  scores.check_kind(kind)
  version_dir = find_export(model_path)
  if version_dir is not None:
    if raw_weights:
      raise ValueError("--raw_weights applies to checkpoints, not to an "
                       "export (it holds the weights it was exported with)")
    return _ExportScorer(version_dir, kind)
  try:
    checkpoint, _ = checkpoints.locate(model_path)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--model {model_path!r} is none of the forms "
                            f"realnvp-score reads: {MODEL_FORMS} ({e})"
                            ) from None
  return _KerasScorer(checkpoint, kind, raw_weights)


def image_files(folder):
  """PNG/JPEG files under `folder` (recursive), sorted."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"image folder {folder!r} does not exist")
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(files)
              if f.lower().endswith(IMAGE_SUFFIXES)]
  if not found:
    raise ValueError(f"no PNG or JPEG files under {folder!r}")
  return found


def folder_batches(folder, image_shape, batch_size, resize=False):
  """`(names, uint8 batches)` of a folder's images, in `image_files` order,
  unreadable files skipped (and named in a warning)."""
  height, width, channels = image_shape
  files = image_files(folder)
  bad = dict(data.unreadable_images(files, channels))
  if bad:
    shown = "\n  ".join(f"{f}: {why}" for f, why in list(bad.items())[:20])
    console.warn(f"skipping {len(bad)} of {len(files)} files that cannot be "
                 f"decoded as images:\n  {shown}")
  files = [f for f in files if f not in bad]
  if not files:
    raise ValueError(f"no readable image under {folder!r}")

  def load(path):
    image = tf.image.decode_image(tf.io.read_file(path), channels=channels,
                                  expand_animations=False)
    if resize:
      image = keras.ops.image.resize(
          tf.cast(image, tf.float32), (height, width),
          crop_to_aspect_ratio=True, interpolation="bilinear")
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image

  def batches():
    batch = []
    for path in files:
      image = load(path)
      if tuple(image.shape[:2]) != (height, width):
        raise ValueError(
            f"{path} is {image.shape[0]}x{image.shape[1]} pixels; the model "
            f"takes {height}x{width} (pass --resize to crop and resize)")
      batch.append(image.numpy())
      if len(batch) == batch_size:
        yield np.stack(batch)
        batch = []
    if batch:
      yield np.stack(batch)
  return files, batches(), -(-len(files) // batch_size)


def dataset_batches(name, split, image_shape, batch_size, **source):
  """`(names, uint8 batches, number of batches or None)` of a dataset
  split."""
  datasets = data.load(name, batch_size=batch_size, dequantize=False,
                       **source)
  if tuple(datasets.image_shape) != tuple(image_shape):
    raise ValueError(f"dataset {name!r} has images of shape "
                     f"{datasets.image_shape}; the model takes {image_shape}")
  pipeline = {"test": datasets.test, "validation": datasets.validation,
              "train": datasets.train}[split]
  if split == "train":
    console.warn("the train split is shuffled: rows are numbered in the "
                 "order drawn")
  count = pipeline.cardinality().numpy()

  def batches():
    for images in pipeline.as_numpy_iterator():
      images = images[0] if isinstance(images, tuple) else images
      yield np.clip(images, 0, 255).astype(np.uint8)
  return None, batches(), (int(count) if count >= 0 else None)


def score_to_csv(model_path, data_name, kind, output, split="test",
                 batch_size=64, resize=False, raw_weights=False, verbose=1,
                 **source):
  """Scores every image of `data_name` and writes `output` (CSV) and the
  histogram beside it; returns `{"csv", "histogram", "count", "mean"}`."""
  if not output.lower().endswith(".csv"):
    raise ValueError(f"--output must name a .csv file, got {output!r}")
  if batch_size < 1:
    raise ValueError(f"--batch_size must be >= 1, got {batch_size}")
  scorer = load_scorer(model_path, kind, raw_weights)
  if data_name.startswith("folder:"):
    names, batches, steps = folder_batches(
        data_name[len("folder:"):], scorer.image_shape, batch_size, resize)
  else:
    names, batches, steps = dataset_batches(
        data_name, split, scorer.image_shape, batch_size, **source)
  progress = keras.utils.Progbar(steps, verbose=verbose, unit_name="batch")
  values = []
  for i, levels in enumerate(batches):
    values.append(np.asarray(scorer(levels), np.float64))
    progress.update(i + 1)
  values = np.concatenate(values) if values else np.zeros([0])
  if not len(values):
    raise ValueError(f"{data_name!r} yielded no images")
  if names is None:
    names = [f"{data_name}:{split}:{i}" for i in range(len(values))]
  with atomic.atomic_path(output, suffix=".csv") as tmp:
    with open(tmp, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["file", "score"])
      for name, value in zip(names, values):
        writer.writerow([name, repr(float(value))])
  histogram = os.path.splitext(output)[0] + ".png"
  figures.save_png(figures.histogram(
      values, f"{kind} scores of {data_name} ({model_path})"), histogram)
  finite = values[np.isfinite(values)]
  if len(finite) < len(values):
    console.warn(f"{len(values) - len(finite)} of {len(values)} scores are "
                 f"not finite (written as they are)")
  return {"csv": output, "histogram": histogram, "count": int(len(values)),
          "mean": float(finite.mean()) if len(finite) else None,
          "kind": kind}


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-score",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("--model",
                 help="run directory, .keras checkpoint, or TF Serving "
                      "export (model or version directory)")
  checkpoints.add_pretrained_flag(
      p, "score with a shipped model instead of --model")
  p.add_argument("--data", required=True,
                 help="dataset name (digits, mnist, ...) or folder:PATH")
  p.add_argument("--kind", default="bpd", choices=list(scores.SCORES))
  p.add_argument("--output", required=True, help="FILE.csv to write")
  p.add_argument("--split", default="test",
                 choices=("test", "validation", "train"))
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--resize", action="store_true",
                 help="crop and resize folder images to the model's size")
  checkpoints.add_raw_weights_flag(p)
  p.add_argument("--data_dir")
  p.add_argument("--manual_dir")
  p.add_argument("--no_download", action="store_true")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  args = p.parse_args(argv)
  checkpoints.check_one_source(p, args.model, args.pretrained,
                               "--model PATH")
  try:
    model_path = args.model
    if args.pretrained:
      model_path = checkpoints.pretrained_file(args.pretrained,
                                               args.raw_weights)
    with console.progress_on_stderr():
      report = score_to_csv(
          model_path, args.data, args.kind, args.output, split=args.split,
          batch_size=args.batch_size, resize=args.resize,
          raw_weights=args.raw_weights, verbose=0 if args.quiet else 1,
          data_dir=args.data_dir, manual_dir=args.manual_dir,
          download=not args.no_download)
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-score: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(report))
  return 0


if __name__ == "__main__":
  sys.exit(main())

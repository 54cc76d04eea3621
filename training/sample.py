"""`realnvp-sample`: PNG grids of samples from a trained checkpoint.

    realnvp-sample runs/digits-20261123-101500 --temperature 0.7 --seed 3
    realnvp-sample model.keras --num 100 --label 7 --output sevens.png
    realnvp-sample model.keras --per_class --output classes.png
    realnvp-sample --pretrained mnist --output mnist.png   # shipped weights

Every grid is captioned with its temperature (and class). Samples are drawn
in chunks of `--chunk` behind a progress bar (thousands take a while); the
draws do not depend on the chunk size.
"""

import argparse
import math
import sys

import keras
import numpy as np
import tensorflow as tf

import tfp_realnvp
from training import checkpoints
from training import console
from training import figures


def draw(model, num, temperature, seed, labels=None, chunk=256, verbose=0):
  """`num` pixel-space samples `[num, H, W, C]` (clipped to [0, 256)),
  decoded `chunk` at a time: the latents are one stateless draw of
  `seed`, so the result is `model.sample(num, temperature, seed, labels)`
  whatever `chunk` is."""
  eps = tf.random.stateless_normal([num, model.event_size], seed=seed)
  latents = eps * temperature
  progress = keras.utils.Progbar(num, verbose=verbose, unit_name="image")
  out = []
  for start in range(0, num, chunk):
    part = None if labels is None else labels[start:start + chunk]
    out.append(model.clip_pixels(model.decode(
        latents[start:start + chunk], labels=part)).numpy())
    progress.update(min(start + chunk, num))
  return np.concatenate(out)


def sample_png(checkpoint_or_run, output, num=64, temperature=1.0, seed=0,
               label=None, per_class=False, raw_weights=False, model=None,
               chunk=256, verbose=0):
  """Writes a grid of `num` samples to `output`; returns the image array.
  `raw_weights`: a model trained with `ema_decay` samples with its raw
  weights instead of the averages. `model`: an already loaded model (then
  `checkpoint_or_run` is only named in messages).

  Arguments are checked before the model is loaded: `temperature` must be a
  finite number > 0 (NaN or inf would give an all-NaN grid), `num` >= 1.
  """
  if isinstance(num, bool) or not isinstance(num, int) or num < 1:
    raise ValueError(f"--num must be an integer >= 1, got {num!r}")
  if not (isinstance(temperature, (int, float)) and
          math.isfinite(temperature) and temperature > 0):
    raise ValueError(f"--temperature must be a finite number > 0, got "
                     f"{temperature!r}")
  if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
    raise ValueError(f"--chunk must be an integer >= 1, got {chunk!r}")
  if model is None:
    path, _ = checkpoints.locate(checkpoint_or_run)
    model = checkpoints.load_model(path, raw_weights=raw_weights)
  if (label is not None or per_class) and not model.num_classes:
    raise ValueError("--label / --per_class need a class-conditional model")
  if label is not None and not 0 <= label < model.num_classes:
    raise ValueError(f"--label must be in [0, {model.num_classes}), got "
                     f"{label}")
  if per_class or (model.num_classes and label is None):
    image = figures.sample_grid(model, num, temperature, seed=(seed, 0))
  else:
    labels = None if label is None else np.full([num], label, np.int32)
    image = figures.grid(draw(model, num, temperature, (seed, 0), labels,
                              chunk, verbose))
  image = figures.captioned(
      figures.upscaled(image, figures.upscale_for(model.image_shape)),
      figures.temperature_caption(temperature, label))
  figures.save_png(image, output)
  return image


def main(argv=None):
  p = argparse.ArgumentParser(prog="realnvp-sample",
                              description=__doc__.split("\n\n")[0])
  p.add_argument("checkpoint", nargs="?",
                 help="run directory or .keras checkpoint")
  checkpoints.add_pretrained_flag(
      p, "a model shipped with the package instead of a checkpoint")
  p.add_argument("--output", default="samples.png")
  p.add_argument("--num", type=int, default=64)
  p.add_argument("--temperature", type=float, default=1.0)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--label", type=int, default=None,
                 help="class of every sample (conditional models)")
  p.add_argument("--per_class", action="store_true",
                 help="one row per class (conditional models)")
  p.add_argument("--chunk", type=int, default=256,
                 help="samples decoded per step (memory vs overhead)")
  p.add_argument("--quiet", action="store_true", help="no progress bar")
  checkpoints.add_raw_weights_flag(p)
  args = p.parse_args(argv)
  checkpoints.check_one_source(p, args.checkpoint, args.pretrained,
                               "a checkpoint")
  try:
    model = None
    if args.pretrained:
      checkpoints.check_no_raw_weights(args.raw_weights)
      model = tfp_realnvp.pretrained(args.pretrained)
    with console.progress_on_stderr():
      sample_png(args.checkpoint or args.pretrained, args.output, args.num,
                 args.temperature, args.seed, args.label, args.per_class,
                 raw_weights=args.raw_weights, model=model, chunk=args.chunk,
                 verbose=0 if args.quiet else 1)
  except (ValueError, FileNotFoundError) as e:
    print(f"realnvp-sample: error: {e}", file=sys.stderr)
    return 2
  print(args.output)
  return 0


if __name__ == "__main__":
  sys.exit(main())
